"""Research runs of the pipeline: optimise, walk forward, signal and check drift per symbol.

What the Dagster research assets and sensors call, one function per step (as
:mod:`cryptota_core.app.backtests` is for backtests), so a notebook or the CLI reproduces the
same numbers and the same stored rows. Each function reads the symbol's candles once and runs
every configured strategy on them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cryptota_core import CODE_VERSION
from cryptota_core.app.candles import CandleInput, candles_from_store
from cryptota_core.backtest.runs import BacktestWindow
from cryptota_core.errors import NoDataError
from cryptota_core.market.intervals import interval_timedelta
from cryptota_core.research.config import ResearchConfig
from cryptota_core.research.drift import DriftCheck, check_drift
from cryptota_core.research.lineage import Lineage
from cryptota_core.research.optimize import (
    BrokerSettings,
    NoCandidateError,
    OptimizationResult,
    optimize,
)
from cryptota_core.research.signals import PaperOrder, latest_orders
from cryptota_core.research.walk_forward import WalkForwardResult, walk_forward
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.research_store import ResearchStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredOptimization:
    run_key: str
    result: OptimizationResult
    candles: CandleInput


@dataclass(frozen=True)
class SymbolOptimization:
    """One symbol's optimisations: a stored search per strategy that had candidates, and why
    each other strategy was skipped (no set made the minimum of trades in the window)."""

    stored: list[StoredOptimization]
    skipped: dict[str, str]


@dataclass(frozen=True)
class StoredWalkForward:
    run_key: str
    result: WalkForwardResult
    candles: CandleInput


def lineage(candles: CandleInput, run_id: str | None) -> Lineage:
    """The lineage of a result computed from stored ``candles`` in run ``run_id``."""
    assert candles.key is not None, "pipeline research reads stored candles"
    return Lineage(
        exchange=candles.key.exchange,
        symbol=candles.key.symbol,
        candle_fingerprint=candles.fingerprint,
        code_version=CODE_VERSION,
        run_id=run_id,
    )


def _candles(store: CandleStore, symbol: str, window: BacktestWindow) -> CandleInput:
    return candles_from_store(store, symbol, window.interval, window.start, window.end)


def optimize_symbol(
    store: CandleStore,
    research: ResearchStore,
    symbol: str,
    config: ResearchConfig,
    *,
    run_id: str | None = None,
    today: pd.Timestamp | None = None,
) -> SymbolOptimization:
    """Optimise every configured strategy on ``symbol``'s optimisation window and store each.
    A strategy none of whose sets made the minimum of trades there is skipped with the reason
    (logged and returned); only when every strategy is skipped does it raise
    :class:`NoCandidateError` (there is then nothing to rank)."""
    candles = _candles(store, symbol, config.optimization_window(today))
    stored = []
    skipped: dict[str, str] = {}
    for search in config.searches():
        try:
            result = optimize(
                candles.frame,
                search,
                interval=candles.interval,
                objective=config.objective,
                top=config.top,
                recheck=config.recheck,
                recheck_engine=config.recheck_engine,
                settings=config.optimize_settings(),
            )
        except NoCandidateError as e:
            skipped[search.strategy] = str(e)
            log.warning("%s %s: skipped: %s", symbol, search.strategy, e)
            continue
        key = research.save_optimization(result, lineage(candles, run_id))
        stored.append(StoredOptimization(key, result, candles))
    if not stored:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
        raise NoCandidateError(f"{symbol}: every strategy was skipped ({reasons})")
    return SymbolOptimization(stored, skipped)


def walk_forward_symbol(
    store: CandleStore,
    research: ResearchStore,
    symbol: str,
    config: ResearchConfig,
    *,
    run_id: str | None = None,
    today: pd.Timestamp | None = None,
) -> list[StoredWalkForward]:
    """Walk every configured strategy forward over ``symbol``'s walk-forward window."""
    candles = _candles(store, symbol, config.walk_forward_window(today))
    return [
        StoredWalkForward(
            research.save_walk_forward(result, lineage(candles, run_id)), result, candles
        )
        for result in (
            walk_forward(
                candles.frame,
                search,
                interval=candles.interval,
                objective=config.objective,
                windows=config.windows,
                in_sample_ratio=config.in_sample_ratio,
                anchored=config.anchored,
            )
            for search in config.searches()
        )
    ]


def current_best(research: ResearchStore, symbol: str, interval: str) -> list[dict[str, Any]]:
    """Each strategy's newest optimisation of ``symbol`` at ``interval`` (``optimization_runs``
    rows as dicts): the parameters signals and drift checks judge."""
    rows = research.latest_optimizations(symbol).to_dict(orient="records")
    return [{str(k): v for k, v in row.items()} for row in rows if row["interval"] == interval]


def _recent_candles(
    store: CandleStore, symbol: str, config: ResearchConfig, days: int, now: pd.Timestamp | None
) -> Callable[[str], CandleInput]:
    """The last ``days`` of ``symbol``'s candles up to the last closed one (not midnight), read
    once per exchange however many strategies ask. A partial window is allowed: signals and
    drift act on the newest candles there are (the store is filled nightly, so today's are not
    in yet); how stale they are is the freshness policy's to report, not a reason to fail."""
    end = (now if now is not None else pd.Timestamp.now(tz="UTC")).floor(
        interval_timedelta(config.interval)
    )
    start = end - pd.Timedelta(days=days)
    read: dict[str, CandleInput] = {}

    def candles(exchange: str) -> CandleInput:
        if exchange not in read:
            read[exchange] = candles_from_store(
                store, symbol, config.interval, start, end, exchange, allow_partial=True
            )
        return read[exchange]

    return candles


def signal_symbol(
    store: CandleStore,
    research: ResearchStore,
    symbol: str,
    config: ResearchConfig,
    *,
    run_id: str | None = None,
    now: pd.Timestamp | None = None,
) -> tuple[list[PaperOrder], int]:
    """The latest signal of each strategy's current best parameters on ``symbol`` as paper
    orders; returns the orders and how many of them were new (a re-run on the same candle places
    nothing twice)."""
    best = current_best(research, symbol, config.interval)
    if not best:
        raise NoDataError(
            f"no optimisation of {symbol} stored yet: materialise parameter_optimization first"
        )
    candles = _recent_candles(store, symbol, config, config.optimization_days, now)
    placed = 0
    orders: list[PaperOrder] = []
    for row in best:
        recent = candles(str(row["exchange"]))
        found = latest_orders(
            recent.frame,
            exchange=str(row["exchange"]),
            symbol=symbol,
            interval=config.interval,
            strategy=str(row["strategy"]),
            params=dict(row["best_params"]),
            **BrokerSettings(**row["statistics"].get("broker", {})).kwargs(),
        )
        placed += research.save_paper_orders(found, lineage(recent, run_id))
        orders += found
    return orders, placed


def drift_symbol(
    store: CandleStore,
    research: ResearchStore,
    symbol: str,
    config: ResearchConfig,
    *,
    now: pd.Timestamp | None = None,
) -> list[DriftCheck]:
    """Check each strategy's current best parameters on ``symbol`` against its walk-forward
    expectation (strategies without a walk-forward are skipped)."""
    candles = _recent_candles(store, symbol, config, config.drift_days, now)
    checks = []
    for row in current_best(research, symbol, config.interval):
        exchange, strategy = str(row["exchange"]), str(row["strategy"])
        windows = research.latest_walk_forward(symbol, strategy, exchange)
        if windows.empty:
            continue
        checks.append(
            check_drift(
                candles(exchange).frame,
                strategy=strategy,
                params=dict(row["best_params"]),
                interval=config.interval,
                out_of_sample_sharpes=[
                    dict(m).get("sharpe_ratio") for m in windows["out_sample_metrics"]
                ],
                sigmas=config.drift_sigmas,
            )
        )
    return checks
