"""Sweep kernels: many parameter sets of one strategy over one candle series, in parallel.

No bars × sets array is ever built. The long-only strategies (``rsi``, ``rsi_ma``,
``rsi_divergence``) run :func:`long_set_nb`, the fast engine's market-order simulation
(:func:`~cryptota_core.backtest.kernels.broker.simulate_long_nb`, the same helper functions and
so the same arithmetic) fused with the streaming figures of
:mod:`~cryptota_core.backtest.kernels.figures`:

* while flat with nothing pending, every bar closes at the cash — a return of exactly 0 that
  changes no sum — so the kernel only scans for the next entry signal;
* in a position it values every close, and adds the return to the figures.

``rsi`` and ``rsi_ma`` sets share one RSI (and SMA) row per distinct period and are run tile by
tile (:func:`level_sweep_nb`): every set of a thread crosses the same few thousand bars before
the thread moves on, so prices and indicator rows stay in the core's cache instead of being
streamed from memory once per set. ``rsi_divergence`` and ``grid`` sets each run their own
per-set kernel (signals or order book) under ``prange``.

The simulation state of a set between tiles lives in a row of ``S_*`` columns.
"""

from __future__ import annotations

import numba
import numpy as np

from cryptota_core.backtest.kernels.broker import (
    long_buy_nb,
    long_sell_nb,
    long_value_nb,
    market_fill_price_nb,
)
from cryptota_core.backtest.kernels.figures import (
    A_DOWN,
    A_EXPOSURE,
    A_FIELDS,
    A_FINAL,
    A_FIRST,
    A_MDD,
    A_PEAK,
    A_RMAX,
    A_RMIN,
    A_TROUGH,
    A_WEALTH,
    CHUNK,
    add_trade_nb,
    drawdown_step_nb,
    equity_figures_nb,
    fifo_trades_nb,
    finish_drawdown_nb,
    init_accumulators_nb,
    long_trade_pnl_nb,
)
from cryptota_core.backtest.kernels.grid import (
    F_COMMISSION,
    F_PRICE,
    F_SIZE,
    simulate_grid_nb,
)
from cryptota_core.backtest.kernels.signals import divergence_signals_nb

# Simulation state of one long-only set between tiles.
S_CASH = 0
S_SIZE = 1  # position size (0 when flat)
S_ENTRY = 2  # entry price of the position
S_ENTRY_COMM = 3  # commission of the entry fill
S_PENDING = 4  # +1 buy, -1 sell waiting for the next open, 0 none
S_QTY = 5  # size of the pending buy
S_PREV = 6  # equity at the previous close
S_BLOCK = 7  # block of the next return
S_SUM = 8  # returns (and their squares, and squared losses) not yet added to the block
S_SUMSQ = 9
S_DOWN = 10
S_COUNT = 11  # how many returns those are
S_FIELDS = 12


def balanced_order(count: int, threads: int) -> np.ndarray:
    """A permutation of ``0 .. count − 1`` whose contiguous ``threads`` slices (how ``prange``
    splits work statically) each take every ``threads``-th set: neighbouring sets of a grid
    cost about the same, so each thread gets a fair share of cheap and dear ones."""
    return np.concatenate([np.arange(k, count, threads) for k in range(max(1, threads))])


@numba.njit(cache=True)
def j_full(t: int, edges: np.ndarray, b: int) -> bool:
    """Whether bar ``t``'s return (index ``t − 1``) lies past block ``b``."""
    return t - 1 >= edges[b + 1]


@numba.njit(cache=True)
def init_long_state_nb(st: np.ndarray, cash: float) -> None:
    """State of a long-only set before bar 0: flat with ``cash``."""
    st[:] = 0.0
    st[S_CASH] = cash
    st[S_PREV] = cash


@numba.njit(cache=True)
def long_set_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    entry_score: np.ndarray,
    entry_level: float,
    exit_score: np.ndarray,
    exit_level: float,
    trend: np.ndarray,
    use_trend: bool,
    warmup: int,
    t0: int,
    t1: int,
    edges: np.ndarray,
    commission: float,
    slippage: float,
    stake: float,
    st: np.ndarray,
    acc: np.ndarray,
    block_sum: np.ndarray,
    block_sumsq: np.ndarray,
) -> None:
    """Bars ``t0 .. t1 − 1`` of one long-only set, from and back into its state row ``st``.

    Enters (when flat, from bar ``warmup`` on) where ``entry_score < entry_level`` and, with
    ``use_trend``, ``close > trend``; exits where ``exit_score > exit_level``. Orders fill at the
    next open exactly as :func:`~cryptota_core.backtest.kernels.broker.simulate_long_nb` fills
    them.

    The smallest equity (``A_EMIN``) is not tracked: a long-only account never reaches zero (a
    buy is rejected unless cash covers it, a sale adds its proceeds less a commission below
    100 %), so it stays at its start value, +inf."""
    cash = st[S_CASH]
    size = st[S_SIZE]
    entry = st[S_ENTRY]
    entry_comm = st[S_ENTRY_COMM]
    pending = st[S_PENDING]
    qty = st[S_QTY]
    prev = st[S_PREV]
    b = int(st[S_BLOCK])
    s = st[S_SUM]
    ss = st[S_SUMSQ]
    d = st[S_DOWN]
    k = int(st[S_COUNT])
    wealth = acc[A_WEALTH]
    peak = acc[A_PEAK]
    trough = acc[A_TROUGH]
    mdd = acc[A_MDD]
    rmin = acc[A_RMIN]
    rmax = acc[A_RMAX]
    exposure = acc[A_EXPOSURE]
    down = acc[A_DOWN]
    t = t0
    while t < t1:
        if pending == 0.0 and size == 0.0:
            # Flat: every close is the cash, a zero return; scan for the next entry signal.
            value = cash + 0.0
            tt = t if t >= warmup else warmup
            while tt < t1 and not (
                entry_score[tt] < entry_level and (not use_trend or close[tt] > trend[tt])
            ):
                tt += 1
            last = tt if tt < t1 else t1 - 1
            if t == 0:
                acc[A_FIRST] = value
            if last >= 1 and last >= t:  # at least one zero return was skipped
                rmin = min(rmin, 0.0)
                rmax = max(rmax, 0.0)
            prev = value
            if tt < t1:
                q = stake * value / close[tt]
                if q:
                    pending = 1.0
                    qty = q
            t = last + 1
            continue
        if pending == 0.0:
            # In a position: value every close until the exit signal. The stretch stops at a
            # block edge or after CHUNK returns, where the local sums join the block's.
            if j_full(t, edges, b) or k == CHUNK:
                block_sum[b] += s
                block_sumsq[b] += ss
                down += d
                s = 0.0
                ss = 0.0
                d = 0.0
                k = 0
                while t - 1 >= edges[b + 1]:
                    b += 1
            stop = min(t1, edges[b + 1] + 1, t + (CHUNK - k))
            start = t
            while t < stop:
                value = long_value_nb(cash, size, entry, close[t])
                r = value / prev - 1.0
                s += r
                ss += r * r
                neg = min(r, 0.0)
                d += neg * neg
                rmin = min(rmin, r)
                rmax = max(rmax, r)
                wealth, peak, trough, mdd = drawdown_step_nb(wealth, r, peak, trough, mdd)
                prev = value
                t += 1
                if exit_score[t - 1] > exit_level:  # t - 1 >= warmup: entered after warm-up
                    pending = -1.0
                    break
            k += t - start
            exposure += t - start
            continue
        # A bar with an order to fill at its open.
        if pending > 0.0:
            p = market_fill_price_nb(1, open_[t], high[t], low[t], slippage)
            new_cash, comm = long_buy_nb(cash, qty, p, commission)
            if new_cash >= 0.0:
                cash = new_cash
                size = qty
                entry = p
                entry_comm = 0.0 + comm
        else:
            p = market_fill_price_nb(-1, open_[t], high[t], low[t], slippage)
            cash, comm = long_sell_nb(cash, size, entry, p, commission)
            add_trade_nb(acc, long_trade_pnl_nb(size, entry, entry_comm, p, comm + 0.0))
            size = 0.0
            entry = 0.0
        pending = 0.0
        value = long_value_nb(cash, size, entry, close[t])
        r = value / prev - 1.0
        if j_full(t, edges, b) or k == CHUNK:
            block_sum[b] += s
            block_sumsq[b] += ss
            down += d
            s = 0.0
            ss = 0.0
            d = 0.0
            k = 0
            while t - 1 >= edges[b + 1]:
                b += 1
        s += r
        ss += r * r
        neg = min(r, 0.0)
        d += neg * neg
        k += 1
        rmin = min(rmin, r)
        rmax = max(rmax, r)
        wealth, peak, trough, mdd = drawdown_step_nb(wealth, r, peak, trough, mdd)
        prev = value
        if size != 0.0:
            exposure += 1.0
        if t >= warmup:
            if size == 0.0:
                if entry_score[t] < entry_level and (not use_trend or close[t] > trend[t]):
                    q = stake * value / close[t]
                    if q:
                        pending = 1.0
                        qty = q
            elif exit_score[t] > exit_level:
                pending = -1.0
        t += 1
    st[S_CASH] = cash
    st[S_SIZE] = size
    st[S_ENTRY] = entry
    st[S_ENTRY_COMM] = entry_comm
    st[S_PENDING] = pending
    st[S_QTY] = qty
    st[S_PREV] = prev
    st[S_BLOCK] = b
    st[S_SUM] = s
    st[S_SUMSQ] = ss
    st[S_DOWN] = d
    st[S_COUNT] = k
    acc[A_WEALTH] = wealth
    acc[A_PEAK] = peak
    acc[A_TROUGH] = trough
    acc[A_MDD] = mdd
    acc[A_RMIN] = rmin
    acc[A_RMAX] = rmax
    acc[A_EXPOSURE] = exposure
    acc[A_DOWN] = down


@numba.njit(cache=True)
def finish_long_set_nb(
    st: np.ndarray, acc: np.ndarray, block_sum: np.ndarray, block_sumsq: np.ndarray
) -> None:
    """After the last bar: add the returns still held locally, close the drawdown."""
    b = int(st[S_BLOCK])
    block_sum[b] += st[S_SUM]
    block_sumsq[b] += st[S_SUMSQ]
    acc[A_DOWN] += st[S_DOWN]
    acc[A_FINAL] = st[S_PREV]
    acc[A_MDD] = finish_drawdown_nb(acc[A_PEAK], acc[A_TROUGH], acc[A_MDD])


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
    the next. Returns ``(accumulators, block_sum, block_sumsq)``."""
    n = close.shape[0]
    n_sets = rsi_row.shape[0]
    n_blocks = edges.shape[0] - 1
    acc = np.empty((n_sets, A_FIELDS))
    st = np.empty((n_sets, S_FIELDS))
    block_sum = np.zeros((n_sets, n_blocks))
    block_sumsq = np.zeros((n_sets, n_blocks))
    for lane in numba.prange(lanes.shape[0]):
        for i in range(lanes.shape[1]):
            s = lanes[lane, i]
            if s >= 0:
                init_accumulators_nb(acc[s])
                init_long_state_nb(st[s], cash)
        for t0 in range(0, n, tile):
            t1 = min(n, t0 + tile)
            for i in range(lanes.shape[1]):
                s = lanes[lane, i]
                if s < 0:
                    break
                rsi = rsi_table[rsi_row[s]]
                long_set_nb(
                    open_,
                    high,
                    low,
                    close,
                    rsi,
                    oversold[s],
                    rsi,
                    overbought[s],
                    trend_table[trend_row[s]],
                    use_trend,
                    warmup[s],
                    t0,
                    t1,
                    edges,
                    commission,
                    slippage,
                    stake,
                    st[s],
                    acc[s],
                    block_sum[s],
                    block_sumsq[s],
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
    n = close.shape[0]
    n_sets = rsi_row.shape[0]
    n_blocks = edges.shape[0] - 1
    acc = np.empty((n_sets, A_FIELDS))
    block_sum = np.zeros((n_sets, n_blocks))
    block_sumsq = np.zeros((n_sets, n_blocks))
    for i in numba.prange(n_sets):
        s = order[i]
        entry, exit_ = divergence_signals_nb(
            low, high, rsi_table[rsi_row[s]], pivot_window[s], max_gap[s], warmup[s]
        )
        entry_score = np.where(entry, -1.0, 1.0)  # enter where the score is below 0
        exit_score = np.where(exit_, 1.0, -1.0)  # exit where it is above 0
        st = np.empty(S_FIELDS)
        init_accumulators_nb(acc[s])
        init_long_state_nb(st, cash)
        long_set_nb(
            open_,
            high,
            low,
            close,
            entry_score,
            0.0,
            exit_score,
            0.0,
            close,
            False,
            warmup[s],
            0,
            n,
            edges,
            commission,
            slippage,
            stake,
            st,
            acc[s],
            block_sum[s],
            block_sumsq[s],
        )
        finish_long_set_nb(st, acc[s], block_sum[s], block_sumsq[s])
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
    acc = np.empty((n_sets, A_FIELDS))
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
        acc[s, A_EXPOSURE] = np.count_nonzero(position)
        fifo_trades_nb(fills[:, F_SIZE], fills[:, F_PRICE], fills[:, F_COMMISSION], acc[s])
    return acc, block_sum, block_sumsq
