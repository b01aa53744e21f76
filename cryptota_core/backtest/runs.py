"""Backtest runs of the pipeline: parameter sets, the configured window, run-and-store.

This is what the Dagster backtest assets call, one function per step, so that the same runs can
be reproduced from a notebook or the CLI with identical results and identical rows in the
results store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cryptota_core.backtest.broker import DEFAULT_BROKER, BrokerSettings
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.backtest.service import (
    CODE_VERSION,
    CandleInput,
    backtest_or_cache,
    candles_from_store,
)
from cryptota_core.cache import ResultCache
from cryptota_core.errors import InvalidInputError, NoDataError
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.results_store import ResultsStore
from cryptota_core.strategies import get_strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BacktestWindow:
    """The candles every pipeline backtest runs on: ``[start, end)`` at ``interval``."""

    interval: str
    start: pd.Timestamp
    end: pd.Timestamp


@dataclass(frozen=True)
class ParamSet:
    """One registered strategy configuration, known by its URL-safe slug."""

    slug: str
    strategy: str
    params: dict[str, Any]


@dataclass(frozen=True)
class StoredRun:
    """A backtest that was run (or served from the cache) and saved under ``run_key``."""

    run_key: str
    result: BacktestResult
    candles: CandleInput
    cached: bool


def backtest_window(interval: str, days: int, today: pd.Timestamp | None = None) -> BacktestWindow:
    """The last ``days`` full UTC days before ``today`` (default: now) at ``interval``
    (CRYPTOTA_BACKTEST_INTERVAL, CRYPTOTA_BACKTEST_DAYS)."""
    end = (today if today is not None else pd.Timestamp.now(tz="UTC")).tz_convert("UTC").floor("D")
    return BacktestWindow(interval, end - pd.Timedelta(days=days), end)


def expand_param_grids(grids: Mapping[str, Mapping[str, Any]]) -> list[ParamSet]:
    """Every valid combination of every strategy's grid, as parameter sets (invalid combinations
    such as ``oversold >= overbought`` are skipped; unknown strategies or keys raise)."""
    sets: dict[str, ParamSet] = {}
    for name, grid in grids.items():
        spec = get_strategy(name)
        for params in spec.expand_grid(dict(grid)):
            slug = spec.slug(params)
            sets[slug] = ParamSet(slug, spec.name, params.model_dump())
    return list(sets.values())


def register_param_sets(results: ResultsStore, param_sets: list[ParamSet]) -> list[str]:
    """Store each parameter set so its slug can be resolved later; returns the slugs."""
    for param_set in param_sets:
        results.register_param_set(param_set.strategy, param_set.slug, param_set.params)
    return [p.slug for p in param_sets]


def resolve_param_sets(results: ResultsStore, slugs: Iterable[str]) -> dict[str, ParamSet]:
    """The registered parameter sets called ``slugs`` (one read of the table for all of them)."""
    found = results.param_sets()
    registered = {
        str(slug): ParamSet(str(slug), str(strategy), dict(params))
        for slug, strategy, params in zip(
            found["slug"], found["strategy"], found["params"], strict=True
        )
    }
    wanted = list(dict.fromkeys(slugs))
    unknown = [slug for slug in wanted if slug not in registered]
    if unknown:
        raise InvalidInputError(
            f"unknown parameter set {unknown[0]!r}: register it first (the param_set_sensor does "
            "this from CRYPTOTA_STRATEGY_GRIDS)"
        )
    return {slug: registered[slug] for slug in wanted}


def resolve_param_set(results: ResultsStore, slug: str) -> ParamSet:
    """The registered parameter set called ``slug``."""
    return resolve_param_sets(results, [slug])[slug]


def pipeline_engine(strategy: str) -> str:
    """The engine pipeline backtests run on: the fast engine wherever it implements the strategy
    (same results as backtrader, bit for bit), backtrader for user strategies. Backtrader stays
    the reference that optimisation re-checks its winners on."""
    from cryptota_core.backtest.fast import supports

    return "fast" if supports(get_strategy(strategy)) else "backtrader"


def run_and_store(
    store: CandleStore,
    results: ResultsStore,
    *,
    symbol: str,
    param_set: ParamSet,
    window: BacktestWindow,
    cache: ResultCache | None = None,
    run_id: str | None = None,
    candles: CandleInput | None = None,
    cash: float = DEFAULT_BROKER.cash,
    commission: float = DEFAULT_BROKER.commission,
    slippage: float = DEFAULT_BROKER.slippage,
    stake: float = DEFAULT_BROKER.stake,
    allow_partial: bool = False,
) -> StoredRun:
    """Backtest ``param_set`` on ``symbol`` over ``window`` and save it (idempotently, keyed by
    the partition) with its candle fingerprint, code version and run id. ``candles`` saves the
    read when the caller already holds the window's candles of ``symbol``; the broker settings
    are DESIGN §5's defaults unless an ad-hoc run asks for others. A window the store does not
    cover is refused unless ``allow_partial`` (then the stored result's window is the one used).
    Out-of-range broker settings are refused before any candle is read."""
    BrokerSettings(cash=cash, commission=commission, slippage=slippage, stake=stake)
    if candles is None:
        candles = candles_from_store(
            store,
            symbol,
            window.interval,
            window.start,
            window.end,
            allow_partial=allow_partial,
        )
    if len(candles.frame) < 2:
        raise NoDataError(
            f"only {len(candles.frame)} {window.interval} candles for {symbol} in the backtest "
            "window; ingest more days first"
        )
    done = backtest_or_cache(
        candles,
        param_set.strategy,
        param_set.params,
        cash=cash,
        commission=commission,
        slippage=slippage,
        stake=stake,
        cache=cache,
        engine=pipeline_engine(param_set.strategy),
    )
    assert candles.key is not None
    run_key = results.save_backtest(
        done.result,
        exchange=candles.key.exchange,
        symbol=symbol,
        candle_fingerprint=candles.fingerprint,
        code_version=CODE_VERSION,
        run_id=run_id,
    )
    return StoredRun(run_key, done.result, candles, done.cached)


def run_many(
    store: CandleStore,
    results: ResultsStore,
    partitions: Iterable[tuple[str, str]],
    *,
    window: BacktestWindow,
    cache: ResultCache | None = None,
    run_id: str | None = None,
) -> list[StoredRun]:
    """:func:`run_and_store` for each ``(symbol, slug)``, in order, reading each symbol's
    candles and the parameter sets once (what one single-run backfill of many partitions does)."""
    pairs = list(partitions)
    param_sets = resolve_param_sets(results, (slug for _, slug in pairs))
    candles: dict[str, CandleInput] = {}
    runs = []
    for symbol, slug in pairs:
        if symbol not in candles:
            candles[symbol] = candles_from_store(
                store, symbol, window.interval, window.start, window.end
            )
        runs.append(
            run_and_store(
                store,
                results,
                symbol=symbol,
                param_set=param_sets[slug],
                window=window,
                cache=cache,
                run_id=run_id,
                candles=candles[symbol],
            )
        )
    return runs
