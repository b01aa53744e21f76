"""Fixed candles for engine and strategy tests: a seeded random walk of 1h BTCUSDT-like candles.

Deterministic (numpy ``default_rng`` with a fixed seed), so golden numbers pinned against it stay
valid. The walk switches between calm and volatile regimes, drifts in runs and is weakly pulled back
to its starting price (so it ranges, like a market between trends): RSI(14) spends real time
below 30 and above 70, and the open of a candle differs from the previous close by a
small gap, so "fills at the next open" is distinguishable from "fills at the close".
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from cryptota_core.market.frame import candle_frame_from_arrays
from cryptota_core.market.intervals import interval_ms

START = pd.Timestamp("2024-01-01", tz="UTC")


def make_candles(
    n: int = 1500, *, seed: int = 20240101, interval: str = "1h", price: float = 40_000.0
) -> pd.DataFrame:
    """A valid canonical candle frame of ``n`` candles (a fresh copy each call)."""
    return _make(n, seed, interval, price).copy()


@lru_cache(maxsize=8)
def _make(n: int, seed: int, interval: str, price: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    regime_vol = np.where(rng.random(n // 48 + 1) < 0.3, 0.012, 0.005)
    vol = np.repeat(regime_vol, 48)[:n]
    drift = np.repeat(rng.normal(0.0, 0.0006, n // 12 + 1), 12)[:n]
    shocks = drift + vol * rng.standard_normal(n)
    log_dev = np.empty(n)  # log(close / price), pulled back towards 0 so the walk ranges
    level = 0.0
    for i in range(n):
        level += shocks[i] - 0.004 * level
        log_dev[i] = level
    close = price * np.exp(log_dev)
    gap = np.exp(rng.normal(0.0, 0.0008, n))
    open_ = np.empty(n)
    open_[0] = price
    open_[1:] = close[:-1] * gap[1:]
    wick = np.abs(rng.normal(0.0, 0.5, (2, n))) * vol
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = rng.gamma(2.0, 50.0, n)
    step = interval_ms(interval)
    times = START.value // 1_000_000 + step * np.arange(n, dtype="int64")
    trades = rng.integers(100, 5000, n)
    taker = volume * rng.uniform(0.3, 0.7, n)
    return candle_frame_from_arrays(
        times,
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "quote_volume": volume * close,
            "trades": trades,
            "taker_buy_base": taker,
            "taker_buy_quote": taker * close,
        },
    )
