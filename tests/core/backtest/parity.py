"""Shared by the parity tests: exact comparison of two backtest results, and hypothesis
strategies for random candle series, parameter sets and broker settings.

The candle series are short (backtrader runs ~10k bars/s) but hostile: irregular gaps in time,
flat stretches where open = high = low = close, prices rounded to a tick so lows and highs tie,
crashes and spikes of 10x at the open or the close (rejections, a ruined account, a grid whose
rebalancing buy is rejected while its sells fill), and tiny volatility where RSI sits at 50.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from cryptota_core.backtest.result import BacktestResult
from cryptota_core.market.frame import candle_frame_from_arrays
from cryptota_core.trades import TRADE_COLUMNS

PROFILE = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Fixed, reproducible hypothesis settings for every parity property (add ``max_examples``)."""

START_MS = 1_704_067_200_000  # 2024-01-01 UTC
HOUR_MS = 3_600_000


def assert_same_result(oracle: BacktestResult, fast: BacktestResult) -> None:
    """Everything a backtest reports is equal between the engines, bit for bit."""
    assert fast.engine == "fast" and oracle.engine == "backtrader"
    assert (fast.strategy, fast.slug, fast.params) == (oracle.strategy, oracle.slug, oracle.params)
    assert (fast.bars, fast.start, fast.end) == (oracle.bars, oracle.start, oracle.end)
    assert fast.rejected_orders == oracle.rejected_orders
    assert fast.equity.index.equals(oracle.equity.index)
    np.testing.assert_array_equal(fast.equity.to_numpy(), oracle.equity.to_numpy(), "equity")
    pd.testing.assert_series_equal(fast.benchmark, oracle.benchmark, check_exact=True)
    assert list(fast.trades.columns) == list(TRADE_COLUMNS)
    pd.testing.assert_frame_equal(fast.trades, oracle.trades, check_exact=True)
    pd.testing.assert_frame_equal(fast.orders, oracle.orders, check_exact=True)
    assert fast.metrics == oracle.metrics  # None for undefined on both sides, never NaN


def make_series(
    n: int,
    seed: int,
    *,
    vol: float,
    flat_share: float,
    shocks: int,
    tick: float,
    time_gaps: bool,
) -> pd.DataFrame:
    """A valid candle frame of ``n`` 1h candles shaped by the knobs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    close = np.empty(n)
    open_ = np.empty(n)
    level = 100.0 * float(np.exp(rng.normal(0.0, 1.0)))
    flat = rng.random(n) < flat_share
    shock_bars = set(rng.integers(1, n, size=shocks).tolist()) if n > 1 else set()
    for i in range(n):
        prev = level
        if flat[i] and i > 0:
            open_[i] = close[i] = prev
            continue
        gap = float(np.exp(rng.normal(0.0, vol / 4)))
        move = float(np.exp(rng.normal(0.0, vol)))
        if i in shock_bars:
            factor = float(rng.choice([0.1, 0.3, 3.0, 10.0]))
            if rng.random() < 0.5:
                gap *= factor
            else:
                move *= factor
        open_[i] = prev * gap
        level = open_[i] * move
        close[i] = level
    wick = np.abs(rng.normal(0.0, vol, (2, n)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - np.minimum(wick[1], 0.5))
    high[flat] = close[flat]
    low[flat] = close[flat]
    if tick > 0:
        tick = tick * 10.0 ** np.floor(np.log10(np.median(close)) - 2)  # ~1e-2 relative ticks
        open_, close = (np.maximum(np.round(x / tick), 1.0) * tick for x in (open_, close))
        high = np.maximum(np.ceil(high / tick) * tick, np.maximum(open_, close))
        low = np.minimum(np.maximum(np.floor(low / tick), 1.0) * tick, np.minimum(open_, close))
    steps = np.ones(n, dtype="int64")
    if time_gaps:
        steps = np.where(rng.random(n) < 0.1, rng.integers(2, 72, n), 1)
    times = START_MS + HOUR_MS * (np.cumsum(steps) - steps[0])
    volume = rng.gamma(2.0, 5.0, n)
    return candle_frame_from_arrays(
        times,
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "quote_volume": volume * close,
            "trades": rng.integers(1, 100, n),
            "taker_buy_base": volume / 2,
            "taker_buy_quote": volume * close / 2,
        },
    )


@st.composite
def candle_series(draw: st.DrawFn, min_size: int = 20, max_size: int = 250) -> pd.DataFrame:
    return make_series(
        draw(st.integers(min_size, max_size)),
        draw(st.integers(0, 2**32 - 1)),
        vol=draw(st.sampled_from([0.0005, 0.004, 0.02, 0.08])),
        flat_share=draw(st.sampled_from([0.0, 0.0, 0.15, 0.6])),
        shocks=draw(st.sampled_from([0, 0, 1, 4])),
        tick=draw(st.sampled_from([0.0, 1.0, 10.0])),
        time_gaps=draw(st.booleans()),
    )


def _threshold_params(draw: st.DrawFn) -> dict[str, Any]:
    oversold = draw(st.one_of(st.integers(1, 60), st.floats(1.0, 60.0)))
    overbought = draw(st.one_of(st.integers(int(oversold) + 1, 99), st.floats(oversold + 0.5, 99)))
    return {"period": draw(st.integers(2, 30)), "oversold": oversold, "overbought": overbought}


@st.composite
def strategy_params(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A valid parameter set of the built-in strategy ``name``."""
    if name == "rsi":
        return _threshold_params(draw)
    if name == "rsi_ma":
        return {**_threshold_params(draw), "ma_period": draw(st.integers(2, 60))}
    if name == "rsi_divergence":
        w = draw(st.integers(1, 6))
        return {
            "period": draw(st.integers(2, 20)),
            "pivot_window": w,
            "max_gap": draw(st.integers(w + 1, 80)),
        }
    assert name == "grid"
    levels = draw(st.integers(1, 6))
    spacing = draw(st.floats(0.1, min(15.0, 99.0 / levels)))
    size = draw(st.floats(0.01, min(0.5, 1.0 / (2 * levels))))
    return {"levels": levels, "spacing_pct": spacing, "order_size": size}


@st.composite
def broker_settings(draw: st.DrawFn) -> dict[str, float]:
    """Cash, commission, slippage and stake, including stake 1 (the whole equity: rejected
    whenever the next open plus commission costs more than the signal close)."""
    return {
        "cash": draw(st.sampled_from([100.0, 10_000.0, 1_234_567.89])),
        "commission": draw(st.sampled_from([0.0, 0.001, 0.0075])),
        "slippage": draw(st.sampled_from([0.0, 0.0, 0.0005, 0.01])),
        "stake": draw(st.sampled_from([0.95, 0.3, 1.0])),
    }
