"""Streaming performance figures: what :func:`~cryptota_core.metrics.compute_metrics` reports
for an equity curve, accumulated bar by bar so a sweep never keeps a curve per parameter set.

Per set the kernels keep a row of accumulators (``A_*`` columns) and, per block of returns,
the sum and the sum of squares (the block arrays of the sweep). Returns are the simple per-bar
returns of the equity curve, ``r_i = e_i / e_{i−1} − 1`` for bars ``1 .. n−1`` (pandas'
``pct_change``); return ``j = i − 1`` belongs to block ``b`` when ``edges[b] <= j <
edges[b+1]``.

Which figures are exact and which are not:

* **exact** (the same floating-point operations in the same order as compute_metrics): the
  final equity; the wealth ``prod(1 + r)`` (numpy's ``cumprod``/``prod`` multiply sequentially,
  and so do we), hence the annual return; the maximum drawdown (running peak of the wealth,
  ``(w − peak) / peak`` — its minimum over a peak's stretch is reached at the stretch's lowest
  wealth, so only that one is divided); trade counts, wins and exposure;
* **summed in another order** (so equal up to rounding): the sums behind the mean, standard
  deviation and downside risk of the returns, and the sums of trade pnl. Returns are summed
  in runs of at most ``CHUNK`` (256) within a block, the runs then added to the block's sum,
  which keeps the rounding error at a few ulps of the sum of ``|r|``, about as good as numpy's
  pairwise sum. Flat bars (a zero return) are skipped: they add nothing.
"""

from __future__ import annotations

import numba
import numpy as np

# Accumulator columns (one row per parameter set).
A_FIRST = 0  # equity at bar 0 (the cash)
A_FINAL = 1  # equity at the last bar
A_WEALTH = 2  # prod(1 + r): compounded growth of 1
A_PEAK = 3  # running peak of the wealth (starts at 1, the wealth before the first return)
A_TROUGH = 4  # lowest wealth since that peak
A_MDD = 5  # lowest (w - peak) / peak of the finished stretches; 0 at first
A_DOWN = 6  # sum of min(r, 0)^2
A_RMIN = 7  # smallest return (inf before any)
A_RMAX = 8  # largest return (-inf before any)
A_EMIN = 9  # smallest equity, grid only (a ruined account falls back to the full metrics)
A_EXPOSURE = 10  # bars closing with a position
A_TRADES = 11  # closed trades
A_WINS = 12  # closed trades with pnl > 0
A_PNL = 13  # sum of closed-trade pnl
A_PNL2 = 14  # sum of squared closed-trade pnl
A_PNL_MIN = 15
A_PNL_MAX = 16
A_FIELDS = 17

CHUNK = 256
"""Returns summed locally before joining their block's sum (rounding-error control)."""


@numba.njit(cache=True)
def init_accumulators_nb(acc: np.ndarray) -> None:
    """Start values of one set's accumulator row."""
    acc[:] = 0.0
    acc[A_WEALTH] = 1.0
    acc[A_PEAK] = 1.0
    acc[A_TROUGH] = 1.0
    acc[A_RMIN] = np.inf
    acc[A_RMAX] = -np.inf
    acc[A_EMIN] = np.inf
    acc[A_PNL_MIN] = np.inf
    acc[A_PNL_MAX] = -np.inf


@numba.njit(cache=True, inline="always")
def drawdown_step_nb(
    wealth: float, r: float, peak: float, trough: float, mdd: float
) -> tuple[float, float, float, float]:
    """One return into the wealth and the drawdown: ``(wealth, peak, trough, mdd)``."""
    wealth = wealth * (1.0 + r)
    if wealth > peak:
        dd = (trough - peak) / peak
        if dd < mdd:
            mdd = dd
        peak = wealth
        trough = wealth
    elif wealth < trough:
        trough = wealth
    return wealth, peak, trough, mdd


@numba.njit(cache=True)
def finish_drawdown_nb(peak: float, trough: float, mdd: float) -> float:
    """The maximum drawdown once the last stretch is closed."""
    dd = (trough - peak) / peak
    return dd if dd < mdd else mdd


@numba.njit(cache=True)
def add_trade_nb(acc: np.ndarray, pnl: float) -> None:
    """One closed trade into the trade accumulators."""
    acc[A_TRADES] += 1.0
    if pnl > 0.0:
        acc[A_WINS] += 1.0
    acc[A_PNL] += pnl
    acc[A_PNL2] += pnl * pnl
    acc[A_PNL_MIN] = min(acc[A_PNL_MIN], pnl)
    acc[A_PNL_MAX] = max(acc[A_PNL_MAX], pnl)


@numba.njit(cache=True)
def long_trade_pnl_nb(
    size: float, entry: float, entry_comm: float, exit_: float, exit_comm: float
) -> float:
    """pnl of one long round trip of ``size`` exactly as ``trades_from_fills`` computes it:
    commissions per unit of each fill, shared by the matched quantity."""
    cpu_entry = entry_comm / abs(size) if size else 0.0
    cpu_exit = exit_comm / abs(size) if size else 0.0
    comm = size * (cpu_entry + cpu_exit)
    return size * (exit_ - entry) * 1.0 - comm


@numba.njit(cache=True)
def equity_figures_nb(
    equity: np.ndarray,
    edges: np.ndarray,
    acc: np.ndarray,
    block_sum: np.ndarray,
    block_sumsq: np.ndarray,
) -> None:
    """Accumulate a whole equity curve into ``acc`` and the block rows (used where a per-set
    simulation keeps its curve anyway: ``rsi_divergence`` and ``grid``)."""
    n = equity.shape[0]
    if n == 0:
        return
    acc[A_FIRST] = equity[0]
    acc[A_FINAL] = equity[n - 1]
    emin = equity[0]
    wealth = acc[A_WEALTH]
    peak = acc[A_PEAK]
    trough = acc[A_TROUGH]
    mdd = acc[A_MDD]
    down = 0.0
    rmin = acc[A_RMIN]
    rmax = acc[A_RMAX]
    b = 0
    s = 0.0
    ss = 0.0
    d = 0.0
    k = 0
    for i in range(1, n):
        e = equity[i]
        if e < emin:
            emin = e
        r = e / equity[i - 1] - 1.0
        j = i - 1
        if j >= edges[b + 1] or k == CHUNK:
            block_sum[b] += s
            block_sumsq[b] += ss
            down += d
            s = 0.0
            ss = 0.0
            d = 0.0
            k = 0
            while j >= edges[b + 1]:
                b += 1
        s += r
        ss += r * r
        if r < 0.0:
            d += r * r
        k += 1
        if r < rmin:
            rmin = r
        if r > rmax:
            rmax = r
        wealth, peak, trough, mdd = drawdown_step_nb(wealth, r, peak, trough, mdd)
    block_sum[b] += s
    block_sumsq[b] += ss
    down += d
    acc[A_EMIN] = emin
    acc[A_WEALTH] = wealth
    acc[A_PEAK] = peak
    acc[A_TROUGH] = trough
    acc[A_MDD] = finish_drawdown_nb(peak, trough, mdd)
    acc[A_DOWN] = down
    acc[A_RMIN] = rmin
    acc[A_RMAX] = rmax


@numba.njit(cache=True)
def fifo_trades_nb(
    fill_size: np.ndarray, fill_price: np.ndarray, fill_comm: np.ndarray, acc: np.ndarray
) -> None:
    """The closed trades of ``trades_from_fills`` (first-in first-out lot matching, the same
    tolerances and the same arithmetic) into the trade accumulators; open lots are ignored."""
    m = fill_size.shape[0]
    lot_size = np.empty(m + 1)
    lot_price = np.empty(m + 1)
    lot_cpu = np.empty(m + 1)
    head = 0
    tail = 0
    for f in range(m):
        size = fill_size[f]
        price = fill_price[f]
        remaining = size
        tolerance = 1e-9 * abs(size)
        cpu = fill_comm[f] / abs(size) if size else 0.0
        while (
            head < tail and abs(remaining) > tolerance and (lot_size[head] > 0) != (remaining > 0)
        ):
            a = abs(remaining)
            bq = abs(lot_size[head])
            qty = bq if bq < a else a  # Python's min(a, b)
            direction = 1.0 if lot_size[head] > 0 else -1.0
            comm = qty * (lot_cpu[head] + cpu)
            pnl = qty * (price - lot_price[head]) * direction - comm
            add_trade_nb(acc, pnl)
            lot_size[head] -= qty * direction
            remaining += qty * direction
            if abs(lot_size[head]) <= 1e-9 * qty or abs(lot_size[head]) <= tolerance:
                head += 1
        if abs(remaining) > tolerance:
            lot_size[tail] = remaining
            lot_price[tail] = price
            lot_cpu[tail] = cpu
            tail += 1
