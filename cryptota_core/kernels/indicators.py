"""backtrader's ``RSI(period, safediv=True)`` and ``SMA(period)``, bit for bit.

* **RSI**: up/down moves ``max(±(c[i] − c[i−1]), 0)``; each smoothed by backtrader's SMMA, i.e.
  ``ExponentialSmoothing(alpha=1/period)`` seeded on bar ``period`` with ``math.fsum`` of the
  first ``period`` moves ÷ ``period``, then ``prev × (1 − alpha) + x × alpha``; ``rs = up /
  down`` with ``0/0 → 1`` (RSI 50) and ``x/0 → inf`` (RSI 100); ``rsi = 100 − 100 / (1 + rs)``.
* **SMA** is backtrader's ``Average``: ``math.fsum(window) / period``, a correctly rounded sum,
  kept here as a rolling exact (Shewchuk) expansion and rounded as CPython's ``fsum`` rounds it.
"""

from __future__ import annotations

import numba
import numpy as np

from cryptota_core.kernels.exact import PARTIALS, fsum_nb, grow_nb, round_partials_nb


@numba.njit(cache=True)
def sma_nb(close: np.ndarray, period: int) -> np.ndarray:
    """backtrader's ``SMA(period)``: ``math.fsum`` of the last ``period`` values ÷ ``period``,
    NaN for the first ``period − 1`` bars. The exact window sum rolls forward (add the new value,
    subtract the old one, both exactly), so each bar costs O(1) instead of O(period)."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    if period < 1 or n < period:
        return out
    partials = np.empty(PARTIALS, dtype=np.float64)
    m = 0
    for i in range(n):
        m = grow_nb(partials, m, close[i])
        if m >= 0 and i >= period:
            m = grow_nb(partials, m, -close[i - period])
        if m < 0:  # expansion overflowed: rebuild it from the window
            m = 0
            for k in range(max(0, i - period + 1), i + 1):
                m = grow_nb(partials, m, close[k])
        if i >= period - 1:
            out[i] = round_partials_nb(partials, m) / period
    return out


@numba.njit(cache=True)
def rsi_nb(close: np.ndarray, period: int) -> np.ndarray:
    """backtrader's ``RSI(period, safediv=True)``, bit for bit; NaN before bar ``period``."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    if period < 1 or n <= period:
        return out
    up = np.zeros(n)
    down = np.zeros(n)
    for i in range(1, n):
        up[i] = max(close[i] - close[i - 1], 0.0)
        down[i] = max(close[i - 1] - close[i], 0.0)
    alpha = 1.0 / period
    alpha1 = 1.0 - alpha
    ma_up = fsum_nb(up[1 : period + 1]) / period
    ma_down = fsum_nb(down[1 : period + 1]) / period
    for i in range(period, n):
        if i > period:
            ma_up = ma_up * alpha1 + up[i] * alpha
            ma_down = ma_down * alpha1 + down[i] * alpha
        # DivZeroByZero: 0/0 -> rs 1 (RSI 50), x/0 -> rs inf (RSI 100)
        no_loss = 1.0 if ma_up == 0.0 else np.inf
        rs = ma_up / ma_down if ma_down != 0.0 else no_loss
        out[i] = 100.0 - 100.0 / (1.0 + rs)
    return out


@numba.njit(cache=True, parallel=True)
def rsi_table_nb(close: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """One :func:`rsi_nb` row per period, the rows computed in parallel (a sweep's RSI table)."""
    table = np.empty((periods.shape[0], close.shape[0]))
    for r in numba.prange(periods.shape[0]):
        table[r] = rsi_nb(close, periods[r])
    return table


@numba.njit(cache=True, parallel=True)
def sma_table_nb(close: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """One :func:`sma_nb` row per period, the rows computed in parallel (a sweep's SMA table)."""
    table = np.empty((periods.shape[0], close.shape[0]))
    for r in numba.prange(periods.shape[0]):
        table[r] = sma_nb(close, periods[r])
    return table
