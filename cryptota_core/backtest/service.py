"""Running a backtest on stored or file candles: the one path the CLI and the pipeline share."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np
import pandas as pd

from cryptota_core import __version__
from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.fast import run_fast_backtest
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.cache import ResultCache, cache_key, cached_backtest
from cryptota_core.errors import InvalidInputError, NoDataError
from cryptota_core.market.binance_csv import read_kline_csv
from cryptota_core.market.frame import EXCHANGES, SeriesKey
from cryptota_core.market.intervals import INTERVAL_MS
from cryptota_core.storage.candle_store import CandleStore, frame_fingerprint
from cryptota_core.strategies import get_strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CandleInput:
    """Candles to backtest on and where they came from (for tracing every number back)."""

    frame: pd.DataFrame
    key: SeriesKey | None
    interval: str
    fingerprint: str
    origin: str


def infer_interval(frame: pd.DataFrame) -> str:
    """The interval of a candle frame, from the most common spacing of its open times."""
    if len(frame) < 2:
        raise InvalidInputError("need at least two candles to infer the interval; pass --interval")
    diffs = np.diff(pd.DatetimeIndex(frame.index).as_unit("ns").asi8) // 1_000_000
    values, counts = np.unique(diffs, return_counts=True)
    step = int(values[np.argmax(counts)])
    for name, ms in INTERVAL_MS.items():
        if ms == step:
            return name
    raise InvalidInputError(f"candles are {step} ms apart, which is not a supported interval")


def candles_from_csv(path: str | Path, interval: str | None = None) -> CandleInput:
    """Candles from a Binance kline CSV (as data.binance.vision ships it)."""
    frame = read_kline_csv(path)
    resolved = interval or infer_interval(frame)
    return CandleInput(frame, None, resolved, frame_fingerprint(frame), f"csv:{Path(path).name}")


def candles_from_store(
    store: CandleStore,
    symbol: str,
    interval: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    exchange: str | None = None,
) -> CandleInput:
    """Candles of one series from the store. Without ``exchange``, Binance data is preferred and
    synthetic data is used only when there is no Binance data in the window (and said so)."""
    for candidate in [exchange] if exchange else list(EXCHANGES):
        key = SeriesKey(exchange=candidate, symbol=symbol, interval=interval)
        read = store.read_with_fingerprint(key, start, end)
        if not read.frame.empty:
            if candidate == "synthetic":
                log.info("backtesting on SYNTHETIC candles for %s (no Binance data)", symbol)
            return CandleInput(read.frame, key, interval, read.fingerprint, f"store:{key}")
    raise NoDataError(
        f"no candles for {symbol} {interval} in [{start.isoformat()}, {end.isoformat()}); run "
        f"`cryptota ingest --symbols {symbol} --start {start.date()} --end {end.date()}` first"
    )


ENGINES = ("backtrader", "fast")
"""backtrader (every strategy, the reference) and the numba engine (the four built-in
strategies; identical results, 60-260x faster)."""

CODE_VERSION = __version__
"""Recorded with every stored result and part of every cache key: a new release never serves a
result computed by an older engine."""


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
    cash: float = 10_000.0,
    commission: float = 0.001,
    slippage: float = 0.0,
    stake: float = 0.95,
    cache: ResultCache | None = None,
    engine: str = "backtrader",
) -> Backtested:
    """Run one strategy configuration on ``candles`` with ``engine``. With a cache,
    an identical run (same strategy, parameters, candles, broker settings and code version) is
    served from it, and the answer says so; only stored series are cached, since only they can
    be invalidated."""
    spec = get_strategy(strategy)
    model = spec.parse_params(params)
    if engine not in ENGINES:
        raise InvalidInputError(f"unknown engine {engine!r}: use {' or '.join(ENGINES)}")
    run = run_fast_backtest if engine == "fast" else run_backtest

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
