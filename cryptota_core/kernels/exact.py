"""Exact summation: CPython's ``math.fsum`` in numba, bit for bit.

backtrader seeds its RSI smoothing and computes every SMA with ``math.fsum``; reproducing the
correctly rounded sum (rather than a naive or pairwise one) is what makes the fast engine's
indicators identical to backtrader's instead of merely close.
"""

from __future__ import annotations

import numba
import numpy as np

PARTIALS = 128
"""Capacity of a rolling exact-sum expansion (sums of prices need a handful of partials)."""


@numba.njit(cache=True)
def grow_nb(partials: np.ndarray, n: int, x: float) -> int:
    """Add ``x`` to the non-overlapping expansion ``partials[:n]`` exactly (CPython's
    ``math.fsum`` inner loop); return the new length, or -1 when the capacity is exceeded."""
    i = 0
    for j in range(n):
        y = partials[j]
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        yr = hi - x
        lo = y - yr
        if lo != 0.0:
            partials[i] = lo
            i += 1
        x = hi
    if x != 0.0:
        if i >= partials.shape[0]:
            return -1
        partials[i] = x
        i += 1
    return i


@numba.njit(cache=True)
def round_partials_nb(partials: np.ndarray, n: int) -> float:
    """The expansion ``partials[:n]`` correctly rounded to a float, as CPython's ``fsum``."""
    hi = 0.0
    lo = 0.0
    if n > 0:
        n -= 1
        hi = partials[n]
        while n > 0:
            x = hi
            n -= 1
            y = partials[n]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if n > 0 and ((lo < 0.0 and partials[n - 1] < 0.0) or (lo > 0.0 and partials[n - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    return hi


@numba.njit(cache=True)
def fsum_nb(values: np.ndarray) -> float:
    """``math.fsum(values)``, bit for bit (finite values)."""
    partials = np.empty(max(PARTIALS, values.shape[0] + 1), dtype=np.float64)
    n = 0
    for k in range(values.shape[0]):
        n = grow_nb(partials, n, values[k])
    return round_partials_nb(partials, n)
