"""The grid bot (:mod:`cryptota_core.strategies.grid`) on backtrader's order book, in numba.

What makes it exact is mirroring backtrader's event order on every bar:

1. **Broker** (``BackBroker.next``): the pending orders are tried once each, in submission order
   (orders still alive keep their place); market orders fill at the open, limit orders as
   :func:`~cryptota_core.backtest.kernels.broker.limit_fill_price_nb` says. Each execution
   updates cash and position before the next order is tried, and queues a notification.
2. **Value** at the close, then the **notifications**, in the order they were queued: a fill
   places the opposite order one level further (a buy at level ``j`` → a sell at ``j + 1``, a
   sell at ``j`` → a buy at ``j − 1``), if the filled order is still a live grid order; a
   rejection frees its level, and a rejected *rebalancing buy* cancels every live sell.
3. The strategy's ``decide``: re-centre (cancel all live orders, size the grid, rebalance the
   inventory with one market order, place the buy and sell limits) on the first bar and when the
   close leaves the grid.

Orders placed in step 2 or 3 join the end of the pending queue and are first tried on the next
bar. A cancelled order leaves the queue at once. Orders are kept in one growable 2-D float array
(one row per order, columns ``O_*``) so the kernel needs no typed containers.
"""

from __future__ import annotations

import numba
import numpy as np

from cryptota_core.backtest.kernels.broker import (
    STATUS_CANCELLED,
    STATUS_FILLED,
    STATUS_OPEN,
    STATUS_PARTIAL,
    STATUS_REJECTED,
    execute_nb,
    limit_fill_price_nb,
    market_fill_price_nb,
    value_nb,
)

DUST = 1e-12
"""The grid strategy's ``_DUST``: a rebalance smaller than this × levels × unit is skipped."""

# Columns of the order array.
O_BAR = 0  # bar after whose close (or in whose notifications) the order was placed
O_SIDE = 1  # +1 buy, -1 sell
O_LIMIT = 2  # 1 limit, 0 market
O_PRICE = 3  # limit price, NaN for market orders
O_SIZE = 4  # size as the strategy logged it
O_REMAINING = 5  # signed units still to execute (backtrader's executed.remsize)
O_STATUS = 6  # STATUS_*
O_FILL_BAR = 7  # bar of the last execution, -1 if none
O_FILL_PRICE = 8  # price of the last execution
O_COMMISSION = 9  # commission of the last execution
O_LEVEL = 10  # grid level j of a limit order
O_FIELDS = 11

# Columns of the fill array (one row per execution, in notification order).
F_BAR = 0
F_SIZE = 1
F_PRICE = 2
F_COMMISSION = 3
F_FIELDS = 4

_EVENT_FILL = 0
_EVENT_MARGIN = 1


@numba.njit(cache=True)
def _grow_rows(a: np.ndarray, rows: int) -> np.ndarray:
    """``a`` with room for at least ``rows`` rows (doubling), contents kept."""
    if rows <= a.shape[0]:
        return a
    out = np.empty((max(rows, 2 * a.shape[0]), a.shape[1]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


@numba.njit(cache=True)
def _grow_ints(a: np.ndarray, size: int) -> np.ndarray:
    if size <= a.shape[0]:
        return a
    out = np.empty(max(size, 2 * a.shape[0]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


@numba.njit(cache=True)
def _remove(a: np.ndarray, count: int, value: int) -> int:
    """Remove ``value`` from ``a[:count]`` keeping the order; return the new count (unchanged
    when absent: backtrader's ``pending.remove`` raising ``ValueError``)."""
    for i in range(count):
        if a[i] == value:
            for j in range(i, count - 1):
                a[j] = a[j + 1]
            return count - 1
    return count


@numba.njit(cache=True)
def level_price_nb(reference: float, j: int, spacing_pct: float) -> float:
    """``GridBt.level_price``: ``reference × (1 + j × spacing_pct / 100)``."""
    return reference * (1.0 + j * spacing_pct / 100.0)


@numba.njit(cache=True)
def simulate_grid_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    levels: int,
    spacing_pct: float,
    order_size: float,
    cash: float,
    commission: float,
    slippage: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Run the grid bot over the candles.

    Returns ``(equity, position, orders, fills, rejected)``: value and position at every close,
    the order rows (``O_*`` columns, in placement order), the executions (``F_*`` columns, in
    the order the strategy was notified) and the number of rejections."""
    n = close.shape[0]
    equity = np.empty(n)
    position = np.empty(n)
    orders = np.empty((64 + 8 * levels, O_FIELDS))
    n_orders = 0
    fills = np.empty((64, F_FIELDS))
    n_fills = 0
    pending = np.empty(64 + 8 * levels, dtype=np.int64)  # backtrader's pending queue
    n_pending = 0
    live = np.empty(64 + 8 * levels, dtype=np.int64)  # GridBt.live, in insertion order
    n_live = 0
    events = np.empty((64, 5))  # this bar's notifications: order, kind, size, price, comm
    size = 0.0
    price = 0.0
    rejected = 0
    reference = 0.0
    centred = False
    unit = 0.0
    rebalance = -1
    for t in range(n):
        # 1. the broker tries every pending order once, in queue order
        n_events = 0
        keep = 0
        for q in range(n_pending):
            k = pending[q]
            side = int(orders[k, O_SIDE])
            if orders[k, O_LIMIT] == 0.0:
                fill = market_fill_price_nb(side, open_[t], high[t], low[t], slippage)
            else:
                fill = limit_fill_price_nb(
                    side, orders[k, O_PRICE], open_[t], high[t], low[t], slippage
                )
            if not np.isnan(fill):
                cash, size, price, executed, comm, margin = execute_nb(
                    orders[k, O_REMAINING], fill, cash, size, price, commission
                )
                if executed != 0.0:
                    remaining = orders[k, O_REMAINING] - executed
                    orders[k, O_REMAINING] = remaining
                    orders[k, O_STATUS] = STATUS_PARTIAL if remaining != 0.0 else STATUS_FILLED
                    orders[k, O_FILL_BAR] = t
                    orders[k, O_FILL_PRICE] = fill
                    orders[k, O_COMMISSION] = comm
                    events = _grow_rows(events, n_events + 1)
                    events[n_events, 0] = k
                    events[n_events, 1] = _EVENT_FILL
                    events[n_events, 2] = executed
                    events[n_events, 3] = fill
                    events[n_events, 4] = comm
                    n_events += 1
                if margin:
                    orders[k, O_STATUS] = STATUS_REJECTED
                    events = _grow_rows(events, n_events + 1)
                    events[n_events, 0] = k
                    events[n_events, 1] = _EVENT_MARGIN
                    n_events += 1
            status = orders[k, O_STATUS]
            if status == STATUS_OPEN or status == STATUS_PARTIAL:  # noqa: SIM109 (numba)
                pending[keep] = k
                keep += 1
        n_pending = keep
        value = value_nb(cash, size, price, close[t])

        # 2. notifications, in the order the broker queued them
        for e in range(n_events):
            k = int(events[e, 0])
            if events[e, 1] == _EVENT_FILL:
                fills = _grow_rows(fills, n_fills + 1)
                fills[n_fills, F_BAR] = t
                fills[n_fills, F_SIZE] = events[e, 2]
                fills[n_fills, F_PRICE] = events[e, 3]
                fills[n_fills, F_COMMISSION] = events[e, 4]
                n_fills += 1
                before = n_live
                n_live = _remove(live, n_live, k)
                if n_live < before:  # a live grid order: place the next one
                    j = int(orders[k, O_LEVEL]) + (1 if events[e, 2] > 0.0 else -1)
                    new_side = -1 if events[e, 2] > 0.0 else 1
                    orders = _grow_rows(orders, n_orders + 1)
                    _new_order(orders, n_orders, t, new_side, 1.0, unit, j, reference, spacing_pct)
                    pending = _grow_ints(pending, n_pending + 1)
                    pending[n_pending] = n_orders
                    n_pending += 1
                    live = _grow_ints(live, n_live + 1)
                    live[n_live] = n_orders
                    n_live += 1
                    n_orders += 1
            else:
                rejected += 1
                n_live = _remove(live, n_live, k)
                if k == rebalance and orders[k, O_SIDE] > 0.0:
                    # the inventory behind the sells never arrived: cancel them
                    keep = 0
                    for i in range(n_live):
                        s = live[i]
                        if orders[s, O_SIDE] < 0.0:
                            before = n_pending
                            n_pending = _remove(pending, n_pending, s)
                            if n_pending < before:
                                orders[s, O_STATUS] = STATUS_CANCELLED
                        else:
                            live[keep] = s
                            keep += 1
                    n_live = keep

        # 3. record the close, then decide
        equity[t] = value
        position[t] = size
        c = close[t]
        if (
            not centred
            or c > level_price_nb(reference, levels, spacing_pct)
            or c < level_price_nb(reference, -levels, spacing_pct)
        ):
            for i in range(n_live):
                s = live[i]
                before = n_pending
                n_pending = _remove(pending, n_pending, s)
                if n_pending < before:
                    orders[s, O_STATUS] = STATUS_CANCELLED
            n_live = 0
            centred = True
            reference = c
            unit = order_size * value / c
            delta = levels * unit - size
            rebalance = -1
            need = n_orders + 2 * levels + 1
            orders = _grow_rows(orders, need)
            pending = _grow_ints(pending, n_pending + 2 * levels + 1)
            live = _grow_ints(live, 2 * levels)
            if abs(delta) > DUST * levels * unit:
                _new_order(
                    orders,
                    n_orders,
                    t,
                    1 if delta > 0 else -1,
                    0.0,
                    abs(delta),
                    0,
                    reference,
                    spacing_pct,
                )
                rebalance = n_orders
                pending[n_pending] = n_orders
                n_pending += 1
                n_orders += 1
            for j in range(1, levels + 1):
                _new_order(orders, n_orders, t, 1, 1.0, unit, -j, reference, spacing_pct)
                pending[n_pending] = n_orders
                n_pending += 1
                live[n_live] = n_orders
                n_live += 1
                n_orders += 1
            for j in range(1, levels + 1):
                _new_order(orders, n_orders, t, -1, 1.0, unit, j, reference, spacing_pct)
                pending[n_pending] = n_orders
                n_pending += 1
                live[n_live] = n_orders
                n_live += 1
                n_orders += 1
    return equity, position, orders[:n_orders].copy(), fills[:n_fills].copy(), rejected


@numba.njit(cache=True)
def _new_order(
    orders: np.ndarray,
    k: int,
    bar: int,
    side: int,
    limit: float,
    size: float,
    level: int,
    reference: float,
    spacing_pct: float,
) -> None:
    """Write order row ``k``. backtrader trades ``|size|`` (``Strategy.buy`` takes ``abs``)."""
    orders[k, O_BAR] = bar
    orders[k, O_SIDE] = side
    orders[k, O_LIMIT] = limit
    orders[k, O_PRICE] = level_price_nb(reference, level, spacing_pct) if limit else np.nan
    orders[k, O_SIZE] = size
    orders[k, O_REMAINING] = abs(size) if side > 0 else -abs(size)
    orders[k, O_STATUS] = STATUS_OPEN
    orders[k, O_FILL_BAR] = -1.0
    orders[k, O_FILL_PRICE] = np.nan
    orders[k, O_COMMISSION] = np.nan
    orders[k, O_LEVEL] = level
