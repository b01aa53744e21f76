"""The research assets, their jobs, schedule and sensors on a real instance and a real
PostgreSQL store: parameter_optimization, walk_forward_report and trading_signals materialise and
store with the run id; the weekly schedule asks for a walk-forward per symbol; re-optimisation
fires after new days of candles, and on performance drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    SensorResult,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from cryptota_core.app.ingest import ingest_series
from cryptota_core.market.frame import SeriesKey
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.settings import Settings, load_settings
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.research_store import ResearchStore
from cryptota_pipelines.defs.ingestion.assets import candles_1m
from cryptota_pipelines.defs.research.schedules import weekly_walk_forward_schedule
from cryptota_pipelines.defs.research.sensors import (
    performance_drift_sensor,
    reoptimization_sensor,
)
from cryptota_pipelines.partitions import partition_key
from cryptota_pipelines.resources import (
    BacktestConfigResource,
    ResearchConfigResource,
    resources_from_settings,
)
from tests.pipelines.conftest import SYMBOLS

GRIDS = {"rsi": {"period": [7, 14], "oversold": [20, 30], "overbought": [70, 80]}}


@pytest.fixture
def research_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Short windows and a small grid so a test run takes seconds."""
    monkeypatch.setenv(
        "CRYPTOTA_OPTIMIZATION_GRIDS",
        '{"rsi": {"period": [7, 14], "oversold": [20, 30], "overbought": [70, 80]}}',
    )
    monkeypatch.setenv("CRYPTOTA_OPTIMIZATION_DAYS", "10")
    monkeypatch.setenv("CRYPTOTA_WALK_FORWARD_DAYS", "20")
    monkeypatch.setenv("CRYPTOTA_WALK_FORWARD_WINDOWS", "3")
    monkeypatch.setenv("CRYPTOTA_OPTIMIZATION_RECHECK", "1")
    # Ten days of hourly candles: few sets make the default five trades.
    monkeypatch.setenv("CRYPTOTA_OPTIMIZATION_MIN_TRADES", "1")
    return load_settings()


def _ingest(store: CandleStore, days: int) -> None:
    """The last ``days`` UTC days of 1m candles up to the current minute, for every symbol."""
    now = pd.Timestamp.now(tz="UTC").floor("min")
    start = now.floor("D") - pd.Timedelta(days=days)
    for symbol in SYMBOLS:
        ingest_series(store, SyntheticSource(seed=3), symbol, "1m", start, now)


def _materialize(
    defs: Definitions, instance: DagsterInstance, assets: list[str], symbol: str
) -> Any:
    from dagster import AssetSelection

    result = materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],  # type: ignore[list-item]
        instance=instance,
        resources=defs.resources,
        selection=AssetSelection.assets(*assets),
        partition_key=symbol,
    )
    assert result.success
    return result


def test_research_assets_store_their_results_with_the_run_id(
    research_settings: Settings, store: CandleStore, instance_with_symbols: DagsterInstance
) -> None:
    from cryptota_pipelines.definitions import build_defs

    defs = build_defs(research_settings)
    _ingest(store, 21)
    research = ResearchStore(store.engine)
    optimised = _materialize(
        defs, instance_with_symbols, ["parameter_optimization", "trading_signals"], "BTCUSDT"
    )
    (event,) = [
        e
        for e in optimised.get_asset_materialization_events()
        if e.asset_key == AssetKey("parameter_optimization")
    ]
    metadata = event.materialization.metadata
    rows = research.latest_optimizations("BTCUSDT")
    assert list(rows["strategy"]) == ["rsi"]
    assert rows.iloc[0]["dagster_run_id"] == optimised.run_id
    stored = rows.iloc[0]["statistics"]
    assert (stored["min_trades"], stored["significance_period"]) == (1, "1d")
    assert stored["effective_observations"] == 10
    assert metadata["rsi/best"].value == rows.iloc[0]["best_slug"]
    assert (
        metadata["top_sets"].records and metadata["top_sets"].schema.columns[0].name == "strategy"
    )
    assert "rsi/objective_heatmap" in metadata and "data_warning" in metadata
    assert len(metadata["rsi/heatmap_preview"].value) < 1_000  # shown inline by the UI
    assert metadata["top_sets_rows"].value[0]["strategy"] == "rsi"
    assert metadata["rsi/sets"].value.endswith("trades and competed")
    assert metadata["rsi/periods"].value.startswith("PSR/DSR/PBO over ")
    signals = [
        e
        for e in optimised.get_asset_materialization_events()
        if e.asset_key == AssetKey("trading_signals")
    ]
    assert signals[0].materialization.metadata["new_paper_orders"].value == len(
        research.paper_orders("BTCUSDT")
    )
    # Re-running the signal on the same candle places nothing twice.
    again = _materialize(defs, instance_with_symbols, ["trading_signals"], "BTCUSDT")
    (event,) = again.get_asset_materialization_events()
    assert event.materialization.metadata["new_paper_orders"].value == 0

    walked = _materialize(defs, instance_with_symbols, ["walk_forward_report"], "BTCUSDT")
    windows = research.latest_walk_forward("BTCUSDT", "rsi")
    assert len(windows) == 3 and set(windows["dagster_run_id"]) == {walked.run_id}
    (event,) = walked.get_asset_materialization_events()
    assert event.materialization.metadata["windows"].records
    assert "out_of_sample_equity" in event.materialization.metadata
    assert len(event.materialization.metadata["equity_preview"].value) < 1_000
    shown = {column.name for column in event.materialization.metadata["windows"].schema.columns}
    assert shown == {
        "strategy",
        "window",
        "out_of_sample",
        "chosen",
        "IS score",
        "OOS score",
        "OOS return %",
    }
    assert event.materialization.metadata["rsi/wfe_windows"].value <= 3


def _optimise_btcusdt(settings: Settings, instance: DagsterInstance) -> ExecuteInProcessResult:
    """parameter_optimization of BTCUSDT, in process, failures returned rather than raised."""
    from cryptota_pipelines.definitions import build_defs

    defs = build_defs(settings)
    return materialize(
        list(defs.assets or []),  # type: ignore[arg-type]
        instance=instance,
        resources=defs.resources,
        selection=[AssetKey("parameter_optimization")],
        partition_key="BTCUSDT",
        raise_on_error=False,
    )


def test_missing_candles_fail_at_once_without_retries(
    research_settings: Settings, instance_with_symbols: DagsterInstance
) -> None:
    result = _optimise_btcusdt(research_settings, instance_with_symbols)
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert "no candles for BTCUSDT" in str(failure.step_failure_data.error)
    assert len(result.get_step_failure_events()) == 1  # not retried


def test_an_optimisation_window_covered_only_in_part_fails_naming_the_covered_range(
    research_settings: Settings, instance_with_symbols: DagsterInstance
) -> None:
    """Four of the ten optimisation days ingested: refused, not optimised on four days."""
    store = CandleStore.from_url(research_settings.resolved_database_url)
    try:
        _ingest(store, days=4)
    finally:
        store.engine.dispose()
    result = _optimise_btcusdt(research_settings, instance_with_symbols)
    assert not result.success
    failure = result.get_step_failure_events()[0]
    error = str(failure.step_failure_data.error)
    assert "BTCUSDT 1h (synthetic): the store has " in error and "of the 240 candles" in error
    assert "cryptota ingest --source synthetic --symbols BTCUSDT" in error
    assert len(result.get_step_failure_events()) == 1  # not retried


def test_weekly_schedule_asks_for_one_walk_forward_per_symbol(
    defs: Definitions, instance: DagsterInstance
) -> None:
    sunday = datetime(2024, 3, 24, 3, tzinfo=UTC)

    def tick() -> Any:
        context = build_schedule_context(
            instance=instance,
            scheduled_execution_time=sunday,
            repository_def=defs.get_repository_def(),
        )
        return weekly_walk_forward_schedule.evaluate_tick(context)

    assert "symbol_universe_sensor" in (tick().skip_message or "")
    instance.add_dynamic_partitions("symbols", SYMBOLS)
    requests = tick().run_requests
    assert [r.partition_key for r in requests] == SYMBOLS
    assert all(r.job_name in (None, "walk_forward_job") for r in requests)
    assert weekly_walk_forward_schedule.cron_schedule == "0 3 * * 0"


def test_reoptimization_sensor_requests_the_symbols_optimisation_after_new_days(
    settings: Settings, instance_with_symbols: DagsterInstance
) -> None:
    instance = instance_with_symbols
    resources = resources_from_settings(settings)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)

    def ingest(day: Any, symbol: str) -> None:
        key = partition_key(day, symbol)
        assert materialize(
            [candles_1m], instance=instance, resources=resources, partition_key=key
        ).success

    def tick(cursor: str | None, after_days: int = 1) -> SensorResult:
        with build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={
                "backtest_config": BacktestConfigResource(reoptimize_after_days=after_days),
                "research_config": ResearchConfigResource(optimization_days=30),
            },
        ) as context:
            result = reoptimization_sensor(context)
        assert isinstance(result, SensorResult) and result.cursor
        return result

    ingest(yesterday - timedelta(days=2), "BTCUSDT")  # before the sensor was turned on
    start = tick(None)
    assert not start.run_requests

    ingest(yesterday, "BTCUSDT")
    fired = tick(start.cursor)
    (request,) = fired.run_requests or []
    assert request.partition_key == "BTCUSDT"
    assert request.tags["cryptota/trigger"] == "reoptimize"
    assert request.run_key is not None and "BTCUSDT" in request.run_key
    assert not tick(fired.cursor).run_requests  # no new candles, no new run

    ingest(pd.Timestamp("2024-01-01").date(), "BTCUSDT")  # outside the window: not new data
    outside = tick(fired.cursor)
    assert not outside.run_requests

    # Waiting for two new days of ETHUSDT: the first is counted, the second launches.
    ingest(yesterday, "ETHUSDT")
    counted = tick(outside.cursor, after_days=2)
    assert not counted.run_requests and "ETHUSDT" in str(counted.skip_reason)
    ingest(yesterday - timedelta(days=1), "ETHUSDT")
    second = tick(counted.cursor, after_days=2)
    assert [r.partition_key for r in second.run_requests or []] == ["ETHUSDT"]


def test_performance_drift_sensor_requests_reoptimisation_when_the_best_underperform(
    research_settings: Settings, store: CandleStore, instance_with_symbols: DagsterInstance
) -> None:
    """With an optimisation and a walk-forward stored, the sensor judges the best parameters on
    the last days: it waits while they hold, and asks for a re-optimisation (one per day) once
    the recent candles turn against them."""
    from cryptota_pipelines.definitions import build_defs

    defs = build_defs(research_settings)
    _ingest(store, 21)
    for assets in (["parameter_optimization"], ["walk_forward_report"]):
        _materialize(defs, instance_with_symbols, assets, "BTCUSDT")
    resources = {
        k: defs.resources[k] for k in ("candle_store", "research_store", "research_config")
    }  # type: ignore[index]

    def tick(sigmas: float) -> SensorResult:
        config = ResearchConfigResource(
            **{**resources["research_config"].model_dump(), "drift_sigmas": sigmas}
        )
        with build_sensor_context(
            instance=instance_with_symbols, resources={**resources, "research_config": config}
        ) as context:
            result = performance_drift_sensor(context)
        assert isinstance(result, SensorResult)
        return result

    lenient = tick(sigmas=1e6)  # nothing falls a million deviations below the mean
    assert not lenient.run_requests and "holds" in str(lenient.skip_reason)

    # The market turns: the last week declines steadily, every candle scaled down a little more
    # (a valid candle stays valid), and RSI keeps buying the dips.
    key = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1m")
    end = pd.Timestamp.now(tz="UTC").floor("min")
    recent = store.read(key, end - pd.Timedelta(days=8), end)
    factor = np.exp(-np.arange(len(recent)) * 5e-5)
    for column in ("open", "high", "low", "close"):
        recent[column] = recent[column].to_numpy() * factor
    store.upsert(key, recent)
    drifted = tick(sigmas=1.0)
    (request,) = drifted.run_requests or []
    assert request.partition_key == "BTCUSDT"
    assert request.tags["cryptota/trigger"] == "drift"
    assert request.tags["cryptota/drifted"] == research_store_best(store)
    assert request.run_key is not None and request.run_key.startswith("drift:BTCUSDT:")


def research_store_best(store: CandleStore) -> str:
    return str(ResearchStore(store.engine).latest_optimizations("BTCUSDT").iloc[0]["best_slug"])
