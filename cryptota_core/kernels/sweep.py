"""Sweep kernels: many parameter sets of one strategy over one candle series, in parallel.

No bars × sets array is ever built. The long-only strategies (``rsi``, ``rsi_ma``,
``rsi_divergence``) run :func:`long_set_nb`, the fast engine's market-order simulation
(:func:`~cryptota_core.kernels.broker.simulate_long_nb`, the same helper functions and
so the same arithmetic) fused with the streaming figures of
:mod:`~cryptota_core.kernels.figures`:

* while flat with nothing pending, every bar closes at the cash — a return of exactly 0 that
  changes no sum — so the kernel only scans for the next entry signal;
* in a position it values every close, and adds the return to the figures.

``rsi`` and ``rsi_ma`` sets share one RSI (and SMA) row per distinct period and are run tile by
tile (:func:`level_sweep_nb`): every set of a thread crosses the same few thousand bars before
the thread moves on, so prices and indicator rows stay in the core's cache instead of being
streamed from memory once per set. ``rsi_divergence`` and ``grid`` sets each run their own
per-set kernel (signals or order book) under ``prange``.

The simulation state of a set between tiles is parked in a :data:`LONG_STATE_DT` record; while
a set runs it lives in NamedTuples (:class:`Account`, :class:`~.figures.Held`, :class:`Curve`)
that numba keeps in registers. :func:`long_set_nb` walks three kinds of stretch (flat, held, a
bar with an order to fill); the loops over bars are its own, the steps between them small
helpers over those NamedTuples and scalars.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from cryptota_core.kernels.broker import (
    Record,
    long_buy_nb,
    long_sell_nb,
    long_value_nb,
    market_fill_price_nb,
)
from cryptota_core.kernels.figures import (
    ACC_DT,
    CHUNK,
    Held,
    add_trade_nb,
    drawdown_step_nb,
    equity_figures_nb,
    fifo_trades_nb,
    finish_drawdown_nb,
    finish_held_nb,
    flush_due_nb,
    flush_nb,
    hold_return_nb,
    init_accumulators_nb,
    long_trade_pnl_nb,
)
from cryptota_core.kernels.grid import simulate_grid_nb
from cryptota_core.kernels.signals import divergence_signals_nb

LONG_STATE_DT = np.dtype(
    [
        ("cash", np.float64),
        ("size", np.float64),  # position size (0 when flat)
        ("entry", np.float64),  # entry price of the position
        ("entry_comm", np.float64),  # commission of the entry fill
        ("pending", np.float64),  # +1 buy, -1 sell waiting for the next open, 0 none
        ("qty", np.float64),  # size of the pending buy
        ("prev", np.float64),  # equity at the previous close
        ("block", np.int64),  # block of the returns held locally
        ("count", np.int64),  # how many returns are held locally
        ("sum", np.float64),  # their sum, sum of squares, sum of squared losses
        ("sumsq", np.float64),
        ("down", np.float64),
    ],
    align=True,
)
"""Simulation state of one long-only set between tiles (see :func:`long_set_nb`)."""


class Account(NamedTuple):
    """The long-only broker of one set: cash, position, the order waiting for the next open,
    and the equity at the previous close."""

    cash: float
    size: float
    entry: float
    entry_comm: float
    pending: float  # +1 buy, -1 sell, 0 none
    qty: float  # size of the pending buy
    prev: float


class Curve(NamedTuple):
    """The streaming figures of one set's equity curve (fields of :data:`ACC_DT`)."""

    wealth: float
    peak: float
    trough: float
    mdd: float
    rmin: float
    rmax: float
    exposure: float
    down: float


class Rule(NamedTuple):
    """When a long-only set trades: enter (when flat, from bar ``warmup`` on) where
    ``entry_score < entry_level`` and, with ``use_trend``, ``close > trend``; exit where
    ``exit_score > exit_level``. Signal strategies pass ±1 scores against level 0."""

    entry_score: np.ndarray
    entry_level: float
    exit_score: np.ndarray
    exit_level: float
    trend: np.ndarray
    use_trend: bool
    warmup: int


class Costs(NamedTuple):
    """The broker settings a long-only set trades with (the cash is in its :class:`Account`)."""

    commission: float
    slippage: float
    stake: float


def balanced_order(count: int, threads: int) -> np.ndarray:
    """A permutation of ``0 .. count − 1`` whose contiguous ``threads`` slices (how ``prange``
    splits work statically) each take every ``threads``-th set: neighbouring sets of a grid
    cost about the same, so each thread gets a fair share of cheap and dear ones."""
    return np.concatenate([np.arange(k, count, threads) for k in range(max(1, threads))])


# ---------------------------------------------------------------------- one long-only set
@numba.njit(cache=True)
def init_long_state_nb(st: Record, acc: Record, cash: float) -> None:
    """State of a long-only set before bar 0: flat with ``cash``; its accumulators reset."""
    init_accumulators_nb(acc)
    acc.first = cash + 0.0
    st.cash = cash
    st.size = 0.0
    st.entry = 0.0
    st.entry_comm = 0.0
    st.pending = 0.0
    st.qty = 0.0
    st.prev = cash
    st.block = 0
    st.count = 0
    st.sum = 0.0
    st.sumsq = 0.0
    st.down = 0.0


@numba.njit(cache=True, inline="always")
def _load_nb(st: Record, acc: Record) -> tuple[Account, Held, Curve]:
    account = Account(st.cash, st.size, st.entry, st.entry_comm, st.pending, st.qty, st.prev)
    held = Held(st.block, st.count, st.sum, st.sumsq, st.down)
    curve = Curve(
        acc.wealth, acc.peak, acc.trough, acc.mdd, acc.rmin, acc.rmax, acc.exposure, acc.down
    )
    return account, held, curve


@numba.njit(cache=True, inline="always")
def _store_nb(st: Record, acc: Record, account: Account, held: Held, curve: Curve) -> None:
    st.cash = account.cash
    st.size = account.size
    st.entry = account.entry
    st.entry_comm = account.entry_comm
    st.pending = account.pending
    st.qty = account.qty
    st.prev = account.prev
    st.block = held.block
    st.count = held.returns
    st.sum = held.sum
    st.sumsq = held.sumsq
    st.down = held.down
    acc.wealth = curve.wealth
    acc.peak = curve.peak
    acc.trough = curve.trough
    acc.mdd = curve.mdd
    acc.rmin = curve.rmin
    acc.rmax = curve.rmax
    acc.exposure = curve.exposure
    acc.down = curve.down


@numba.njit(cache=True, inline="always")
def _enters_nb(score: float, level: float, close: float, trend: float, use_trend: bool) -> bool:
    """The entry rule on one bar (see :class:`Rule`)."""
    return score < level and (not use_trend or close > trend)


@numba.njit(cache=True, inline="always")
def _with_return_nb(curve: Curve, r: float, down: float, exposure: float) -> Curve:
    """``curve`` after return ``r``, with the new totals of squared losses and exposure."""
    wealth, peak, trough, mdd = drawdown_step_nb(
        curve.wealth, r, curve.peak, curve.trough, curve.mdd
    )
    return Curve(wealth, peak, trough, mdd, min(curve.rmin, r), max(curve.rmax, r), exposure, down)


@numba.njit(cache=True, inline="always")
def _after_flat_nb(
    t: int, tt: int, t1: int, close_tt: float, stake: float, account: Account, curve: Curve
) -> tuple[int, Account, Curve]:
    """A flat stretch from bar ``t`` to the entry signal on bar ``tt`` (``t1``: none in this
    tile). Every close is the cash, a zero return that adds nothing to the sums but counts for
    the smallest and largest return; the buy is placed for the next open. Returns the bar after
    the stretch."""
    value = account.cash + 0.0
    last = tt if tt < t1 else t1 - 1
    rmin = curve.rmin
    rmax = curve.rmax
    if last >= 1 and last >= t:  # at least one zero return was skipped
        rmin = min(rmin, 0.0)
        rmax = max(rmax, 0.0)
    pending = account.pending
    qty = account.qty
    if tt < t1:
        q = stake * value / close_tt
        if q:
            pending = 1.0
            qty = q
    account = Account(
        account.cash, account.size, account.entry, account.entry_comm, pending, qty, value
    )
    curve = Curve(
        curve.wealth, curve.peak, curve.trough, curve.mdd, rmin, rmax, curve.exposure, curve.down
    )
    return last + 1, account, curve


@numba.njit(cache=True, inline="always")
def _fill_at_open_nb(
    open_: float, high: float, low: float, costs: Costs, account: Account, acc: Record
) -> Account:
    """The pending order fills at this bar's open (a buy the cash cannot cover is rejected and
    changes nothing); a sale closes a trade into ``acc``."""
    cash = account.cash
    size = account.size
    entry = account.entry
    entry_comm = account.entry_comm
    if account.pending > 0.0:
        p = market_fill_price_nb(1, open_, high, low, costs.slippage)
        new_cash, comm = long_buy_nb(cash, account.qty, p, costs.commission)
        if new_cash >= 0.0:
            cash = new_cash
            size = account.qty
            entry = p
            entry_comm = 0.0 + comm
    else:
        p = market_fill_price_nb(-1, open_, high, low, costs.slippage)
        cash, comm = long_sell_nb(cash, size, entry, p, costs.commission)
        add_trade_nb(acc, long_trade_pnl_nb(size, entry, entry_comm, p, comm + 0.0))
        size = 0.0
        entry = 0.0
    return Account(cash, size, entry, entry_comm, 0.0, account.qty, account.prev)


@numba.njit(cache=True, inline="always")
def _decide_nb(
    account: Account, value: float, close: float, enters: bool, exits: bool, stake: float
) -> Account:
    """After the close of a bar past the warm-up: a buy of ``stake × value / close`` when flat
    and ``enters``, the sale of the position when long and ``exits``."""
    pending = account.pending
    qty = account.qty
    if account.size == 0.0:
        if enters:
            q = stake * value / close
            if q:
                pending = 1.0
                qty = q
    elif exits:
        pending = -1.0
    return Account(
        account.cash, account.size, account.entry, account.entry_comm, pending, qty, value
    )


@numba.njit(cache=True)
def long_set_nb(
    prices: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    rule: Rule,
    costs: Costs,
    t0: int,
    t1: int,
    edges: np.ndarray,
    st: Record,
    acc: Record,
    block_sum: np.ndarray,
    block_sumsq: np.ndarray,
) -> None:
    """Bars ``t0 .. t1 − 1`` of one long-only set trading by ``rule``, from and back into its
    parked state ``st`` (:data:`LONG_STATE_DT`) and accumulators ``acc`` (:data:`ACC_DT`).
    ``prices`` are (open, high, low, close). Orders fill at the next open exactly as
    :func:`~cryptota_core.kernels.broker.simulate_long_nb` fills them.

    The bars come in three kinds of stretch: flat (scan for the entry), held (value every
    close until the exit) and a bar with an order to fill. The loops over bars stay in this
    function and the helpers take scalars only: a call passing arrays costs two atomic
    reference-count updates per array, which at one call per stretch made the sweep a third
    slower (and the arrays are shared by the threads).

    The smallest equity (``emin``) is not tracked: a long-only account never reaches zero (a
    buy is rejected unless cash covers it, a sale adds its proceeds less a commission below
    100 %), so it stays at its start value, +inf."""
    open_, high, low, close = prices
    entry_score, entry_level, exit_score, exit_level, trend, use_trend, warmup = rule
    account, held, curve = _load_nb(st, acc)
    t = t0
    while t < t1:
        if account.pending == 0.0 and account.size == 0.0:
            tt = t if t >= warmup else warmup
            while tt < t1 and not _enters_nb(
                entry_score[tt], entry_level, close[tt], trend[tt], use_trend
            ):
                tt += 1
            close_tt = close[tt] if tt < t1 else np.nan
            t, account, curve = _after_flat_nb(t, tt, t1, close_tt, costs.stake, account, curve)
            continue
        down = curve.down
        if flush_due_nb(t - 1, held, edges[held.block + 1]):
            held, down = flush_nb(t - 1, held, down, edges, block_sum, block_sumsq)
        if account.pending == 0.0:
            # Held: the stretch also stops at a block edge or after CHUNK returns, where the
            # held sums join the block's.
            stop = min(t1, edges[held.block + 1] + 1, t + (CHUNK - held.returns))
            start = t
            cash, size, entry, entry_comm, pending, qty, prev = account
            wealth, peak, trough, mdd, rmin, rmax, exposure, _ = curve
            while t < stop:
                value = long_value_nb(cash, size, entry, close[t])
                r = value / prev - 1.0
                held = hold_return_nb(held, r)
                rmin = min(rmin, r)
                rmax = max(rmax, r)
                wealth, peak, trough, mdd = drawdown_step_nb(wealth, r, peak, trough, mdd)
                prev = value
                t += 1
                if exit_score[t - 1] > exit_level:  # t - 1 >= warmup: entered after it
                    pending = -1.0
                    break
            account = Account(cash, size, entry, entry_comm, pending, qty, prev)
            curve = Curve(wealth, peak, trough, mdd, rmin, rmax, exposure + (t - start), down)
            continue
        # An order fills at this bar's open; the close is valued, then the rule decides.
        account = _fill_at_open_nb(open_[t], high[t], low[t], costs, account, acc)
        value = long_value_nb(account.cash, account.size, account.entry, close[t])
        r = value / account.prev - 1.0
        held = hold_return_nb(held, r)
        exposure = curve.exposure + (1.0 if account.size != 0.0 else 0.0)
        curve = _with_return_nb(curve, r, down, exposure)
        if t >= warmup:
            enters = _enters_nb(entry_score[t], entry_level, close[t], trend[t], use_trend)
            exits = exit_score[t] > exit_level
            account = _decide_nb(account, value, close[t], enters, exits, costs.stake)
        else:
            account = Account(
                account.cash,
                account.size,
                account.entry,
                account.entry_comm,
                account.pending,
                account.qty,
                value,
            )
        t += 1
    _store_nb(st, acc, account, held, curve)


@numba.njit(cache=True)
def finish_long_set_nb(
    st: Record, acc: Record, block_sum: np.ndarray, block_sumsq: np.ndarray
) -> None:
    """After the last bar: add the returns still held locally, close the drawdown."""
    held = Held(st.block, st.count, st.sum, st.sumsq, st.down)
    acc.down = finish_held_nb(held, acc.down, block_sum, block_sumsq)
    acc.final = st.prev
    acc.mdd = finish_drawdown_nb(acc.peak, acc.trough, acc.mdd)


@numba.njit(cache=True)
def _signal_set_nb(
    prices: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    entry: np.ndarray,
    exit_: np.ndarray,
    warmup: int,
    edges: np.ndarray,
    cash: float,
    costs: Costs,
    st: Record,
    acc: Record,
    block_sum: np.ndarray,
    block_sumsq: np.ndarray,
) -> None:
    """One long-only set over all bars from boolean entry and exit signals (state ``st``)."""
    entry_score = np.where(entry, -1.0, 1.0)  # enter where the score is below 0
    exit_score = np.where(exit_, 1.0, -1.0)  # exit where it is above 0
    rule = Rule(entry_score, 0.0, exit_score, 0.0, prices[3], False, warmup)
    init_long_state_nb(st, acc, cash)
    long_set_nb(prices, rule, costs, 0, prices[3].shape[0], edges, st, acc, block_sum, block_sumsq)
    finish_long_set_nb(st, acc, block_sum, block_sumsq)


# ------------------------------------------------------------------------ sweep kernels
@numba.njit(cache=True, parallel=True)
def level_sweep_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    rsi_table: np.ndarray,
    trend_table: np.ndarray,
    rsi_row: np.ndarray,
    trend_row: np.ndarray,
    oversold: np.ndarray,
    overbought: np.ndarray,
    warmup: np.ndarray,
    use_trend: bool,
    edges: np.ndarray,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
    lanes: np.ndarray,
    tile: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rsi`` / ``rsi_ma`` sets: each row of ``lanes`` (set indices, −1 padded) is one
    parallel lane that walks the bars tile by tile, running all of its sets on a tile before
    the next. Returns ``(accumulators, block_sum, block_sumsq)`` (:data:`ACC_DT` records)."""
    n = close.shape[0]
    n_sets = rsi_row.shape[0]
    n_blocks = edges.shape[0] - 1
    prices = (open_, high, low, close)
    costs = Costs(commission, slippage, stake)
    acc = np.empty(n_sets, dtype=ACC_DT)
    st = np.empty(n_sets, dtype=LONG_STATE_DT)
    block_sum = np.zeros((n_sets, n_blocks))
    block_sumsq = np.zeros((n_sets, n_blocks))
    for lane in numba.prange(lanes.shape[0]):
        for i in range(lanes.shape[1]):
            s = lanes[lane, i]
            if s >= 0:
                init_long_state_nb(st[s], acc[s], cash)
        for t0 in range(0, n, tile):
            t1 = min(n, t0 + tile)
            for i in range(lanes.shape[1]):
                s = lanes[lane, i]
                if s < 0:
                    break
                rsi = rsi_table[rsi_row[s]]
                trend = trend_table[trend_row[s]]
                rule = Rule(rsi, oversold[s], rsi, overbought[s], trend, use_trend, warmup[s])
                long_set_nb(
                    prices, rule, costs, t0, t1, edges, st[s], acc[s], block_sum[s], block_sumsq[s]
                )
        for i in range(lanes.shape[1]):
            s = lanes[lane, i]
            if s >= 0:
                finish_long_set_nb(st[s], acc[s], block_sum[s], block_sumsq[s])
    return acc, block_sum, block_sumsq


@numba.njit(cache=True, parallel=True)
def divergence_sweep_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    rsi_table: np.ndarray,
    rsi_row: np.ndarray,
    pivot_window: np.ndarray,
    max_gap: np.ndarray,
    warmup: np.ndarray,
    edges: np.ndarray,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
    order: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rsi_divergence`` sets, one per ``prange`` iteration (in ``order``, see
    :func:`balanced_order`): the set's pivot signals (from the shared RSI row of its period),
    then :func:`long_set_nb` over all bars."""
    n_sets = rsi_row.shape[0]
    n_blocks = edges.shape[0] - 1
    prices = (open_, high, low, close)
    costs = Costs(commission, slippage, stake)
    acc = np.empty(n_sets, dtype=ACC_DT)
    st = np.empty(n_sets, dtype=LONG_STATE_DT)
    block_sum = np.zeros((n_sets, n_blocks))
    block_sumsq = np.zeros((n_sets, n_blocks))
    for i in numba.prange(n_sets):
        s = order[i]
        entry, exit_ = divergence_signals_nb(
            low, high, rsi_table[rsi_row[s]], pivot_window[s], max_gap[s], warmup[s]
        )
        _signal_set_nb(
            prices, entry, exit_, warmup[s], edges, cash, costs, st[s], acc[s], block_sum[s],
            block_sumsq[s],
        )  # fmt: skip
    return acc, block_sum, block_sumsq


@numba.njit(cache=True, parallel=True)
def signal_sweep_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    entry: np.ndarray,
    exit_: np.ndarray,
    warmup: np.ndarray,
    edges: np.ndarray,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
    order: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long-only sets from precomputed signals (``entry`` and ``exit_``: one boolean row per
    set), one per ``prange`` iteration in ``order``: any signal strategy's sweep without a
    kernel of its own."""
    n_sets = entry.shape[0]
    n_blocks = edges.shape[0] - 1
    prices = (open_, high, low, close)
    costs = Costs(commission, slippage, stake)
    acc = np.empty(n_sets, dtype=ACC_DT)
    st = np.empty(n_sets, dtype=LONG_STATE_DT)
    block_sum = np.zeros((n_sets, n_blocks))
    block_sumsq = np.zeros((n_sets, n_blocks))
    for i in numba.prange(n_sets):
        s = order[i]
        _signal_set_nb(
            prices, entry[s], exit_[s], warmup[s], edges, cash, costs, st[s], acc[s],
            block_sum[s], block_sumsq[s],
        )  # fmt: skip
    return acc, block_sum, block_sumsq


@numba.njit(cache=True, parallel=True)
def grid_sweep_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    levels: np.ndarray,
    spacing_pct: np.ndarray,
    order_size: np.ndarray,
    edges: np.ndarray,
    cash: float,
    commission: float,
    slippage: float,
    order: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``grid`` sets, one per ``prange`` iteration (in ``order``, see :func:`balanced_order`):
    the fast engine's order-book simulation, then its equity curve and fills folded into the
    figures (the curve is one set's, per thread, and freed before the next)."""
    n_sets = levels.shape[0]
    n_blocks = edges.shape[0] - 1
    acc = np.empty(n_sets, dtype=ACC_DT)
    block_sum = np.zeros((n_sets, n_blocks))
    block_sumsq = np.zeros((n_sets, n_blocks))
    for i in numba.prange(n_sets):
        s = order[i]
        equity, position, _, fills, _ = simulate_grid_nb(
            open_,
            high,
            low,
            close,
            levels[s],
            spacing_pct[s],
            order_size[s],
            cash,
            commission,
            slippage,
        )
        init_accumulators_nb(acc[s])
        equity_figures_nb(equity, edges, acc[s], block_sum[s], block_sumsq[s])
        acc[s].exposure = np.count_nonzero(position)
        fifo_trades_nb(fills, acc[s])
    return acc, block_sum, block_sumsq
