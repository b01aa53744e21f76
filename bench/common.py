"""Shared benchmark helpers: timing, the results table, and the data sets."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd

from cryptota_core.market.frame import candle_frame_from_arrays


@dataclass
class Row:
    """One benchmark measurement: ``rate`` items per second (higher is better) over ``seconds``."""

    group: str
    case: str
    ours_or_peer: str
    items: int
    seconds: float
    unit: str = "candles"
    note: str = ""

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")


T = TypeVar("T")


def timed(fn: Callable[[], T], repeat: int = 1) -> tuple[float, T]:
    """Best wall time of ``repeat`` runs of ``fn`` and its last result."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def year_of_1m_candles(seed: int = 1) -> pd.DataFrame:
    """525,600 valid 1m candles (one 365-day year) with full-precision float values."""
    n = 525_600
    rng = np.random.default_rng(seed)
    close = 42_000 * np.exp(np.cumsum(rng.normal(0, 8e-4, n)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.random(n) * 5e-4)
    low = np.minimum(open_, close) * (1 - rng.random(n) * 5e-4)
    volume = rng.random(n) * 10
    start_ms = int(pd.Timestamp("2023-01-01", tz="UTC").value // 1_000_000)
    return candle_frame_from_arrays(
        start_ms + np.arange(n, dtype="int64") * 60_000,
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "quote_volume": volume * close,
            "trades": rng.integers(1, 3000, n),
            "taker_buy_base": volume / 2,
            "taker_buy_quote": volume * close / 2,
        },
    )
