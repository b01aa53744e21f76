"""The main job (``cryptota demo``, ``make run``): the whole asset graph, in process, on the
embedded default, then the leaderboard.

It materialises into the persistent Dagster instance under ``CRYPTOTA_HOME`` (a SQLite
instance), so ``make ui`` afterwards shows the same runs, materialisations, checks and plots.
Each stage is one run per symbol covering all of that symbol's partitions, exactly as a backfill
would run in production.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
from dagster import DagsterInstance, Definitions

from cryptota_core.app.backtests import register_param_sets
from cryptota_core.app.ingest import resolve_source_name
from cryptota_core.backtest.runs import expand_param_grids
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.frame import CandleReport, SeriesKey
from cryptota_core.market.intervals import interval_timedelta
from cryptota_core.research.walk_forward import MIN_WINDOW_BARS, splits
from cryptota_core.settings import Settings, load_settings
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.research_store import ResearchStore
from cryptota_core.storage.results_store import ResultsStore
from cryptota_pipelines.definitions import build_defs
from cryptota_pipelines.partitions import (
    PARAM_SETS_PARTITIONS,
    SYMBOLS_PARTITIONS,
    backtest_range_tags,
    range_tags,
)

Stage = Callable[[str], None]
"""Told the name of each stage as it starts (the CLI shows it as progress)."""


@dataclass(frozen=True)
class DemoResult:
    """What the demo did: the source it resolved, the runs it launched, the ranking."""

    source: str
    dagster_home: str
    runs: int
    candles: dict[str, CandleReport]
    leaderboard: pd.DataFrame
    optimizations: pd.DataFrame
    """The newest optimisation per symbol and strategy (``optimization_runs`` rows)."""
    walk_forward_skipped: str | None = None
    """Why ``walk_forward_report`` was not run (too few days for the split), or None."""


DAYS_PER_REQUIRED_TRADE = 4
"""The demo's optimisation asks at most one closed trade per this many days of its window: the
default grids' RSI sets trade about once every 3–5 days on 1h candles, so a short demo
(``--days 3``) would otherwise find no set with ``CRYPTOTA_OPTIMIZATION_MIN_TRADES`` trades and
fail; a 30-day demo keeps the configured minimum (5), a 17-day one asks 4."""


def demo_settings(settings: Settings, days: int) -> Settings:
    """The demo's settings: ``auto`` resolved once (Binance if it answers, else synthetic) so
    every run of the demo reads the same exchange, the backtest and optimisation windows = the
    ingested days, and the optimisation's minimum trades fitted to a short window
    (:data:`DAYS_PER_REQUIRED_TRADE`)."""
    source = resolve_source_name(settings.source, settings)
    return load_settings(
        source=source,
        backtest_days=days,
        optimization_days=days,
        walk_forward_days=days,
        optimization_min_trades=demo_min_trades(settings.optimization_min_trades, days),
    )


def demo_min_trades(configured: int, days: int) -> int:
    """The configured minimum, or one trade per :data:`DAYS_PER_REQUIRED_TRADE` days of the
    window if that is fewer (none below four days: a 3-day window may see no RSI+MA trade)."""
    return min(configured, days // DAYS_PER_REQUIRED_TRADE)


def open_instance(settings: Settings) -> DagsterInstance:
    """The persistent local instance ``make ui`` also opens."""
    home = settings.resolved_dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        # A local SQLite instance under CRYPTOTA_HOME; saying so keeps Dagster from warning.
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()


def _add_missing(instance: DagsterInstance, name: str, keys: Sequence[str]) -> None:
    known = set(instance.get_dynamic_partitions(name))
    missing = [key for key in keys if key not in known]
    if missing:
        instance.add_dynamic_partitions(name, missing)


def run_demo(settings: Settings, *, days: int = 30, on_stage: Stage | None = None) -> DemoResult:
    """Ingest the last ``days`` UTC days of 1m candles for the configured symbols, build the
    rollups, backtest every configured parameter set on every symbol, rank them, then optimise
    every symbol (CRYPTOTA_OPTIMIZATION_GRIDS), place its latest signals and walk it forward."""
    stage = on_stage or (lambda _name: None)
    settings = demo_settings(settings, days)
    instance = open_instance(settings)
    defs = build_defs(settings)
    symbols = settings.symbols
    param_sets = expand_param_grids(settings.strategy_grids)
    slugs = register_param_sets(ResultsStore.from_url(settings.resolved_database_url), param_sets)
    _add_missing(instance, SYMBOLS_PARTITIONS, symbols)
    _add_missing(instance, PARAM_SETS_PARTITIONS, slugs)

    today = pd.Timestamp.now(tz="UTC").date()
    first, last = today - timedelta(days=days), today - timedelta(days=1)
    runs = 0
    for symbol in symbols:
        stage(f"candle_ingestion_job: {symbol} {first} .. {last}")
        _run(defs, instance, "candle_ingestion_job", range_tags(first, last, [symbol]))
        runs += 1
    for symbol in symbols:
        stage(f"backtest_job: {len(slugs)} parameter sets on {symbol}, then the leaderboard")
        _run(defs, instance, "backtest_job", backtest_range_tags([symbol], slugs))
        runs += 1
    walk_forward_skipped = walk_forward_too_short(settings, days)
    for symbol in symbols:
        stage(
            f"optimization_job: {symbol} (parameter_optimization with sets of at least "
            f"{settings.optimization_min_trades} trades, trading_signals)"
        )
        _run(defs, instance, "optimization_job", {}, partition=symbol)
        runs += 1
        if walk_forward_skipped is None:
            stage(f"walk_forward_job: {symbol}")
            _run(defs, instance, "walk_forward_job", {}, partition=symbol)
            runs += 1
    store = CandleStore.from_url(settings.resolved_database_url)
    start, end = pd.Timestamp(first, tz="UTC"), pd.Timestamp(today, tz="UTC")
    exchange = "synthetic" if settings.source == "synthetic" else "binance"
    candles = {
        symbol: store.gap_report(SeriesKey(exchange=exchange, symbol=symbol, interval="1m"),
                                 start, end)
        for symbol in symbols
    }  # fmt: skip
    board = ResultsStore.from_url(settings.resolved_database_url).leaderboard(
        top=3, min_trades=settings.leaderboard_min_trades
    )
    optimizations = ResearchStore.from_url(settings.resolved_database_url).latest_optimizations()
    return DemoResult(
        settings.source,
        str(settings.resolved_dagster_home),
        runs,
        candles,
        board,
        optimizations,
        walk_forward_skipped,
    )


def walk_forward_too_short(settings: Settings, days: int) -> str | None:
    """Why ``days`` of candles cannot be walked forward with the configured split (the demo
    then skips ``walk_forward_report`` and says so), or None when they can."""
    if _splittable(settings, days):
        return None
    enough = next(n for n in range(days + 1, 3651) if _splittable(settings, n))
    return (
        f"walk_forward_report not run: {days} days of {settings.backtest_interval} candles are "
        f"too few for {settings.walk_forward_windows} windows at in-sample ratio "
        f"{settings.walk_forward_in_sample_ratio:g} (each window needs {MIN_WINDOW_BARS} "
        f"candles); `cryptota demo --days {enough}` or more runs it"
    )


def _splittable(settings: Settings, days: int) -> bool:
    bars = days * (pd.Timedelta(days=1) // interval_timedelta(settings.backtest_interval))
    try:
        splits(
            bars,
            windows=settings.walk_forward_windows,
            in_sample_ratio=settings.walk_forward_in_sample_ratio,
            anchored=False,
        )
    except InvalidInputError:
        return False
    return True


def _run(
    defs: Definitions,
    instance: DagsterInstance,
    job: str,
    tags: dict[str, str],
    partition: str | None = None,
) -> None:
    """One in-process run of the code location's job ``job`` (the one its schedules and sensors
    launch, so the UI shows the demo's runs under the same names), over the range in ``tags``
    or the one ``partition``."""
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        tags={**tags, "cryptota/trigger": "demo"},
        partition_key=partition,
        # The CLI shows progress itself; Dagster's DEBUG event stream stays in the instance.
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    if not result.success:
        raise RuntimeError(f"demo run {result.run_id} ({job}) failed; open `make ui` to see why")
