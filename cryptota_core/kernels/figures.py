"""Streaming performance figures: what :func:`~cryptota_core.metrics.compute_metrics` reports
for an equity curve, accumulated bar by bar so a sweep never keeps a curve per parameter set.

Per set the kernels keep one accumulator record (:data:`ACC_DT`) and, per block of returns,
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

from typing import NamedTuple

import numba
import numpy as np

from cryptota_core.kernels.broker import Record

ACC_DT = np.dtype(
    [
        ("first", np.float64),  # equity at bar 0 (the cash)
        ("final", np.float64),  # equity at the last bar
        ("wealth", np.float64),  # prod(1 + r): compounded growth of 1
        ("peak", np.float64),  # running peak of the wealth (1 before the first return)
        ("trough", np.float64),  # lowest wealth since that peak
        ("mdd", np.float64),  # lowest (w - peak) / peak of the finished stretches; 0 at first
        ("down", np.float64),  # sum of min(r, 0)^2
        ("rmin", np.float64),  # smallest return (inf before any)
        ("rmax", np.float64),  # largest return (-inf before any)
        ("emin", np.float64),  # smallest equity, grid only (a ruined account: full metrics)
        ("exposure", np.float64),  # bars closing with a position
        ("trades", np.float64),  # closed trades
        ("wins", np.float64),  # closed trades with pnl > 0
        ("pnl", np.float64),  # sum of closed-trade pnl
        ("pnl2", np.float64),  # sum of squared closed-trade pnl
        ("pnl_min", np.float64),
        ("pnl_max", np.float64),
    ],
    align=True,
)
"""The accumulators of one parameter set: one record per set, read by name by the sweep's
figures (:mod:`cryptota_core.backtest.sweep`)."""

CHUNK = 256
"""Returns summed locally before joining their block's sum (rounding-error control)."""


class Held(NamedTuple):
    """Returns summed locally since they last joined their block's sums (at most
    :data:`CHUNK` of them, all in block ``block``)."""

    block: int
    returns: int  # how many
    sum: float
    sumsq: float
    down: float  # sum of their squared losses, min(r, 0)^2


@numba.njit(cache=True)
def flush_nb(
    j: int,
    held: Held,
    down: float,
    edges: np.ndarray,
    block_sum: np.ndarray,
    block_sumsq: np.ndarray,
) -> tuple[Held, float]:
    """Add the ``held`` returns to their block's sums (and their squared losses to the total
    ``down``), and start an empty run in the block of return ``j``. Returns the new run and
    total.

    Due when return ``j`` lies past the held block or ``CHUNK`` returns are held (see
    :func:`flush_due_nb`); the callers test that inline and call this only then, because a
    call that passes arrays costs reference counting on every bar."""
    b = held.block
    block_sum[b] += held.sum
    block_sumsq[b] += held.sumsq
    down += held.down
    while j >= edges[b + 1]:
        b += 1
    return Held(b, 0, 0.0, 0.0, 0.0), down


@numba.njit(cache=True, inline="always")
def flush_due_nb(j: int, held: Held, block_end: int) -> bool:
    """Whether return ``j`` cannot join ``held``: it lies at or past ``block_end`` (the held
    block's end, ``edges[held.block + 1]``) or ``CHUNK`` returns are held already."""
    return j >= block_end or held.returns == CHUNK


@numba.njit(cache=True, inline="always")
def hold_return_nb(held: Held, r: float) -> Held:
    """``held`` with return ``r`` added."""
    neg = min(r, 0.0)
    return Held(
        held.block, held.returns + 1, held.sum + r, held.sumsq + r * r, held.down + neg * neg
    )


@numba.njit(cache=True)
def finish_held_nb(
    held: Held, down: float, block_sum: np.ndarray, block_sumsq: np.ndarray
) -> float:
    """After the last return: the held run joins its block; returns the total ``down``."""
    block_sum[held.block] += held.sum
    block_sumsq[held.block] += held.sumsq
    return down + held.down


@numba.njit(cache=True)
def init_accumulators_nb(acc: Record) -> None:
    """Start values of one set's accumulator record (:data:`ACC_DT`)."""
    acc.first = 0.0
    acc.final = 0.0
    acc.wealth = 1.0
    acc.peak = 1.0
    acc.trough = 1.0
    acc.mdd = 0.0
    acc.down = 0.0
    acc.rmin = np.inf
    acc.rmax = -np.inf
    acc.emin = np.inf
    acc.exposure = 0.0
    acc.trades = 0.0
    acc.wins = 0.0
    acc.pnl = 0.0
    acc.pnl2 = 0.0
    acc.pnl_min = np.inf
    acc.pnl_max = -np.inf


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
def add_trade_nb(acc: Record, pnl: float) -> None:
    """One closed trade into the trade accumulators."""
    acc.trades += 1.0
    if pnl > 0.0:
        acc.wins += 1.0
    acc.pnl += pnl
    acc.pnl2 += pnl * pnl
    acc.pnl_min = min(acc.pnl_min, pnl)
    acc.pnl_max = max(acc.pnl_max, pnl)


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
    acc: Record,
    block_sum: np.ndarray,
    block_sumsq: np.ndarray,
) -> None:
    """Accumulate a whole equity curve into ``acc`` and the block rows (used where a per-set
    simulation keeps its curve anyway: ``grid``)."""
    n = equity.shape[0]
    if n == 0:
        return
    acc.first = equity[0]
    acc.final = equity[n - 1]
    emin = equity[0]
    wealth = acc.wealth
    peak = acc.peak
    trough = acc.trough
    mdd = acc.mdd
    down = 0.0
    rmin = acc.rmin
    rmax = acc.rmax
    held = Held(0, 0, 0.0, 0.0, 0.0)
    for i in range(1, n):
        e = equity[i]
        if e < emin:
            emin = e
        r = e / equity[i - 1] - 1.0
        if flush_due_nb(i - 1, held, edges[held.block + 1]):
            held, down = flush_nb(i - 1, held, down, edges, block_sum, block_sumsq)
        held = hold_return_nb(held, r)
        if r < rmin:
            rmin = r
        if r > rmax:
            rmax = r
        wealth, peak, trough, mdd = drawdown_step_nb(wealth, r, peak, trough, mdd)
    acc.down = finish_held_nb(held, down, block_sum, block_sumsq)
    acc.emin = emin
    acc.wealth = wealth
    acc.peak = peak
    acc.trough = trough
    acc.mdd = finish_drawdown_nb(peak, trough, mdd)
    acc.rmin = rmin
    acc.rmax = rmax


@numba.njit(cache=True)
def fifo_trades_nb(fills: np.ndarray, acc: Record) -> None:
    """The closed trades of ``trades_from_fills`` (first-in first-out lot matching, the same
    tolerances and the same arithmetic) of ``fills`` (:data:`~.broker.FILL_DT` records) into
    the trade accumulators; open lots are ignored."""
    m = fills.shape[0]
    lot_size = np.empty(m + 1)
    lot_price = np.empty(m + 1)
    lot_cpu = np.empty(m + 1)
    head = 0
    tail = 0
    for f in range(m):
        fill = fills[f]
        size = fill.size
        price = fill.price
        remaining = size
        tolerance = 1e-9 * abs(size)
        cpu = fill.commission / abs(size) if size else 0.0
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
