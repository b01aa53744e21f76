"""Entry and exit signals of the long-only rule strategies, on every bar.

A signal is read on bar ``t`` after it closed; bars before the strategy's warm-up never signal
(the simulation ignores them anyway). NaN indicator values compare False, as in backtrader.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def level_signals_nb(
    rsi: np.ndarray,
    oversold: float,
    overbought: float,
    close: np.ndarray,
    trend: np.ndarray,
    use_trend: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``rsi`` and ``rsi_ma``: enter when ``rsi < oversold`` (and, with ``use_trend``, ``close >
    trend``, the SMA); exit when ``rsi > overbought``."""
    n = rsi.shape[0]
    entry = np.zeros(n, dtype=np.bool_)
    exit_ = np.zeros(n, dtype=np.bool_)
    for t in range(n):
        entry[t] = rsi[t] < oversold and (not use_trend or close[t] > trend[t])
        exit_[t] = rsi[t] > overbought
    return entry, exit_


@numba.njit(cache=True)
def is_pivot_low_nb(low: np.ndarray, c: int, w: int) -> bool:
    """Bar ``c`` holds the *first* minimum of ``low[c-w .. c+w]``: strictly below every bar to
    its left, at most every bar to its right (Python's ``values.index(min(values)) == w``)."""
    x = low[c]
    for i in range(c - 1, c - w - 1, -1):  # nearest first: most candidates fail at once
        if not low[i] > x:
            return False
    for i in range(c + 1, c + w + 1):  # noqa: SIM110 (a plain loop compiles in numba)
        if low[i] < x:
            return False
    return True


@numba.njit(cache=True)
def is_pivot_high_nb(high: np.ndarray, c: int, w: int) -> bool:
    """Mirror image of :func:`is_pivot_low_nb` on highs (first maximum of the window)."""
    x = high[c]
    for i in range(c - 1, c - w - 1, -1):
        if not high[i] < x:
            return False
    for i in range(c + 1, c + w + 1):  # noqa: SIM110 (a plain loop compiles in numba)
        if high[i] > x:
            return False
    return True


@numba.njit(cache=True)
def divergence_signals_nb(
    low: np.ndarray,
    high: np.ndarray,
    rsi: np.ndarray,
    pivot_window: int,
    max_gap: int,
    warmup: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``rsi_divergence`` (see its module): on bar ``t >= warmup`` the bar ``c = t − w`` is
    tested as a pivot low and a pivot high (confirmed only now, ``w`` bars later). A new pivot
    low lower than the previous one, with a higher RSI at the pivot and at most ``max_gap`` bars
    after it, is a bullish divergence (entry); a higher pivot high with a lower RSI is bearish
    (exit). The last pivot is replaced whether or not the gap was small enough."""
    n = low.shape[0]
    w = pivot_window
    entry = np.zeros(n, dtype=np.bool_)
    exit_ = np.zeros(n, dtype=np.bool_)
    has_low = False
    low_bar = 0
    low_price = 0.0
    low_rsi = 0.0
    has_high = False
    high_bar = 0
    high_price = 0.0
    high_rsi = 0.0
    for t in range(max(warmup, 2 * w), n):
        c = t - w
        if is_pivot_low_nb(low, c, w):
            r = rsi[c]
            if has_low and c - low_bar <= max_gap:
                entry[t] = low[c] < low_price and r > low_rsi
            has_low = True
            low_bar = c
            low_price = low[c]
            low_rsi = r
        if is_pivot_high_nb(high, c, w):
            r = rsi[c]
            if has_high and c - high_bar <= max_gap:
                exit_[t] = high[c] > high_price and r < high_rsi
            has_high = True
            high_bar = c
            high_price = high[c]
            high_rsi = r
    return entry, exit_
