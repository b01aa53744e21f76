"""Backtest use cases: run one configuration (or serve it from the cache), and run-and-store
the pipeline's backtests.

This is what the CLI and the Dagster backtest assets call, one function per step, so that the
same runs can be reproduced from a notebook or the CLI with identical results and identical rows
in the results store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from cryptota_core import CODE_VERSION
from cryptota_core.app.candles import CandleInput, candles_from_store
from cryptota_core.backtest.cache import ResultCache, cache_key, cached_backtest
from cryptota_core.backtest.engines import engine_runner
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.backtest.runs import BacktestWindow, ParamSet
from cryptota_core.broker import DEFAULT_BROKER, BrokerSettings
from cryptota_core.errors import InvalidInputError, NoDataError
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.results_store import ResultsStore
from cryptota_core.strategies import get_strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backtested:
    """A backtest's result and whether the cache served it (then no engine ran)."""

    result: BacktestResult
    cached: bool


class BacktestOptions(TypedDict, total=False):
    """The keyword arguments of :func:`backtest_or_cache` (and :func:`backtest`)."""

    cash: float
    commission: float
    slippage: float
    stake: float
    cache: ResultCache | None
    engine: str


def backtest(
    candles: CandleInput,
    strategy: str,
    params: Mapping[str, Any] | str | None,
    **options: Unpack[BacktestOptions],
) -> BacktestResult:
    """The result of :func:`backtest_or_cache`, for callers that do not ask where it came
    from."""
    return backtest_or_cache(candles, strategy, params, **options).result


def backtest_or_cache(
    candles: CandleInput,
    strategy: str,
    params: Mapping[str, Any] | str | None,
    *,
    cash: float = DEFAULT_BROKER.cash,
    commission: float = DEFAULT_BROKER.commission,
    slippage: float = DEFAULT_BROKER.slippage,
    stake: float = DEFAULT_BROKER.stake,
    cache: ResultCache | None = None,
    engine: str = "backtrader",
) -> Backtested:
    """Run one strategy configuration on ``candles`` with ``engine``. With a cache,
    an identical run (same strategy, parameters, candles, broker settings and code version) is
    served from it, and the answer says so; only stored series are cached, since only they can
    be invalidated."""
    spec = get_strategy(strategy)
    model = spec.parse_params(params)
    run = engine_runner(engine)

    def compute() -> BacktestResult:
        return run(
            candles.frame,
            spec,
            model,
            interval=candles.interval,
            cash=cash,
            commission=commission,
            slippage=slippage,
            stake=stake,
        )

    if cache is None or candles.key is None:
        return Backtested(compute(), cached=False)
    key = cache_key(
        strategy=spec.name,
        params=model.model_dump(),
        candle_fingerprint=candles.fingerprint,
        engine=engine,
        code_version=CODE_VERSION,
        cash=cash,
        commission=commission,
        slippage=slippage,
        stake=stake,
        interval=candles.interval,
        symbol=candles.key.symbol,
        exchange=candles.key.exchange,
    )
    return Backtested(*cached_backtest(cache, key, compute))


@dataclass(frozen=True)
class StoredRun:
    """A backtest that was run (or served from the cache) and saved under ``run_key``."""

    run_key: str
    result: BacktestResult
    candles: CandleInput
    cached: bool


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
