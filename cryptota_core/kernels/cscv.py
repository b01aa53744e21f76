"""Combinatorially symmetric cross-validation (CSCV) over per-block sums: the heart of the
probability of backtest overfitting (:func:`~cryptota_core.research.statistics.pbo_from_blocks`
states the method and its choices; this module only evaluates it).

One parallel pass over the combinations that hold block 0: each gives two in-sample /
out-of-sample splits (the combination and its complement). For each, every set's Sharpe ratio
over either half comes from its block sums, the in-sample choice is the lowest set within the
tie tolerance of the best, and the choice's out-of-sample rank ω among all sets follows. Per
combination this needs a few arrays of one value per set, never a sets × combinations matrix,
and no set's sums are read twice.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _half_sharpe_nb(total: float, total_sq: float, count: float, zero_dispersion: float) -> float:
    """``mean / std(ddof=1)`` of one half from its sums; −inf where undefined (fewer than two
    returns, or a sum of squared deviations at most ``zero_dispersion`` of the sum of squares)."""
    mean = total / count
    deviations = total_sq - total * mean
    if not (count >= 2.0 and deviations > zero_dispersion * total_sq):
        return -math.inf
    return mean / math.sqrt(deviations / (count - 1.0))


@numba.njit(cache=True, inline="always")
def _tolerance_nb(value: float, relative: float, absolute: float) -> float:
    """The tie tolerance around ``value`` (no relative part for an infinite value)."""
    scale = abs(value) if math.isfinite(value) else 0.0
    return relative * scale + absolute


@numba.njit(cache=True, inline="always")
def _split_nb(
    ins: np.ndarray,
    outs: np.ndarray,
    out_sums: np.ndarray,
    relative: float,
    absolute: float,
) -> tuple[int, float, float, float, bool]:
    """One split: the in-sample choice, its IS and OOS Sharpe ratios, its OOS ω and whether its
    OOS sum of returns is a loss."""
    n_sets = ins.shape[0]
    top = ins[0]
    for i in range(1, n_sets):
        if ins[i] > top:
            top = ins[i]
    floor = top - _tolerance_nb(top, relative, absolute)
    best = 0
    while ins[best] < floor:
        best += 1
    chosen = outs[best]
    below = 0
    tied = 0
    if math.isfinite(chosen):
        tol = _tolerance_nb(chosen, relative, absolute)
        for i in range(n_sets):
            if outs[i] < chosen - tol:
                below += 1
            elif abs(outs[i] - chosen) <= tol:
                tied += 1
    else:  # chosen without an OOS Sharpe ratio: tied with every set without one
        for i in range(n_sets):
            if outs[i] == chosen:
                tied += 1
    omega = (below + (tied + 1) / 2.0) / (n_sets + 1)
    return best, ins[best], chosen, omega, out_sums[best] < 0.0


@numba.njit(cache=True, parallel=True)
def cscv_nb(
    sums: np.ndarray,
    sumsqs: np.ndarray,
    counts: np.ndarray,
    halves: np.ndarray,
    flat_as_zero: np.ndarray,
    zero_dispersion: float,
    relative: float,
    absolute: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSCV of ``sums``, ``sumsqs`` and ``counts`` (sets × blocks) over the combinations whose
    in-sample blocks are the rows of ``halves`` (combinations × blocks, booleans), each row also
    scored as the out-of-sample half of its complement, once per flat-half convention in
    ``flat_as_zero`` (booleans: an undefined Sharpe ratio ranks as 0 instead of below every
    defined one). The halves' sums are formed once for all conventions.

    Returns ``(chosen, is_sharpe, oos_sharpe, omega, loss)``, each of shape (conventions, 2,
    combinations): on axis 1, 0 is the split whose in-sample half is the row of ``halves`` and
    1 its complement."""
    n_sets, n_blocks = sums.shape
    n_rows = halves.shape[0]
    shape = (flat_as_zero.shape[0], 2, n_rows)
    chosen = np.empty(shape, dtype=np.int64)
    is_sharpe = np.empty(shape)
    oos_sharpe = np.empty(shape)
    omega = np.empty(shape)
    loss = np.empty(shape, dtype=np.bool_)
    for k in numba.prange(n_rows):
        worst_a = np.empty(n_sets)
        worst_b = np.empty(n_sets)
        sum_a = np.empty(n_sets)
        sum_b = np.empty(n_sets)
        for i in range(n_sets):
            total_a = total_sq_a = count_a = 0.0
            total_b = total_sq_b = count_b = 0.0
            for j in range(n_blocks):
                if halves[k, j]:
                    total_a += sums[i, j]
                    total_sq_a += sumsqs[i, j]
                    count_a += counts[i, j]
                else:
                    total_b += sums[i, j]
                    total_sq_b += sumsqs[i, j]
                    count_b += counts[i, j]
            worst_a[i] = _half_sharpe_nb(total_a, total_sq_a, count_a, zero_dispersion)
            worst_b[i] = _half_sharpe_nb(total_b, total_sq_b, count_b, zero_dispersion)
            sum_a[i] = total_a
            sum_b[i] = total_b
        for c in range(flat_as_zero.shape[0]):
            if flat_as_zero[c]:
                sharpe_a = np.where(worst_a == -math.inf, 0.0, worst_a)
                sharpe_b = np.where(worst_b == -math.inf, 0.0, worst_b)
            else:
                sharpe_a = worst_a
                sharpe_b = worst_b
            for side in range(2):
                if side == 0:
                    got = _split_nb(sharpe_a, sharpe_b, sum_b, relative, absolute)
                else:
                    got = _split_nb(sharpe_b, sharpe_a, sum_a, relative, absolute)
                chosen[c, side, k] = got[0]
                is_sharpe[c, side, k] = got[1]
                oos_sharpe[c, side, k] = got[2]
                omega[c, side, k] = got[3]
                loss[c, side, k] = got[4]
    return chosen, is_sharpe, oos_sharpe, omega, loss
