"""The grid bot (:mod:`cryptota_core.strategies.grid`) on backtrader's order book, in numba.

What makes it exact is mirroring backtrader's event order on every bar:

1. **Broker** (``BackBroker.next``): the pending orders are tried once each, in submission order
   (orders still alive keep their place); market orders fill at the open, limit orders as
   :func:`~cryptota_core.kernels.broker.limit_fill_price_nb` says. Each execution
   updates cash and position before the next order is tried, and queues a notification.
2. **Value** at the close, then the **notifications**, in the order they were queued: a fill
   places the opposite order one level further (a buy at level ``j`` → a sell at ``j + 1``, a
   sell at ``j`` → a buy at ``j − 1``), if the filled order is still a live grid order; a
   rejection frees its level, and a rejected *rebalancing buy* cancels every live sell.
3. The strategy's ``decide``: re-centre (cancel all live orders, size the grid, rebalance the
   inventory with one market order, place the buy and sell limits) on the first bar and when the
   close leaves the grid.

Orders placed in step 2 or 3 join the end of the pending queue and are first tried on the next
bar. A cancelled order leaves the queue at once. Orders are kept in one growable record array
(:data:`~cryptota_core.kernels.broker.ORDER_DT`, one row per order) and the queues in
growable index arrays (a :class:`Book`), so the kernel needs no typed containers.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from cryptota_core.kernels.broker import (
    FILL_DT,
    ORDER_DT,
    STATUS_CANCELLED,
    STATUS_FILLED,
    STATUS_OPEN,
    STATUS_PARTIAL,
    STATUS_REJECTED,
    Record,
    execute_nb,
    limit_fill_price_nb,
    market_fill_price_nb,
    value_nb,
)

DUST = 1e-12
"""The grid strategy's ``_DUST``: a rebalance smaller than this × levels × unit is skipped."""

_EVENT_FILL = 0
_EVENT_MARGIN = 1

EVENT_DT = np.dtype(
    [
        ("order", np.int64),  # row of the order in the book
        ("kind", np.int64),  # _EVENT_FILL or _EVENT_MARGIN
        ("size", np.float64),  # signed executed units (fills)
        ("price", np.float64),
        ("commission", np.float64),
    ],
    align=True,
)
"""One notification the broker queued on this bar, delivered after the close is valued."""


class Book(NamedTuple):
    """The grid's orders and the two queues over them; each array has spare room at its end
    (grown by doubling), the counts say how much is used."""

    orders: np.ndarray  # ORDER_DT rows, in placement order
    n_orders: int
    pending: np.ndarray  # backtrader's pending queue: order rows, in submission order
    n_pending: int
    live: np.ndarray  # GridBt.live: live grid orders, in insertion order
    n_live: int


class Centre(NamedTuple):
    """Where the grid stands: its reference close, order size, and the rebalancing order."""

    centred: bool
    reference: float
    unit: float
    rebalance: int  # order row of the last re-centring's market order, -1 if none


@numba.njit(cache=True)
def _grow(a: np.ndarray, size: int) -> np.ndarray:
    """``a`` with room for at least ``size`` rows (doubling), contents kept."""
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
    the :data:`ORDER_DT` rows (in placement order), the :data:`FILL_DT` executions (in the
    order the strategy was notified) and the number of rejections."""
    n = close.shape[0]
    equity = np.empty(n)
    position = np.empty(n)
    room = 64 + 8 * levels
    orders = np.empty(room, dtype=ORDER_DT)
    n_orders = 0
    pending = np.empty(room, dtype=np.int64)
    n_pending = 0
    live = np.empty(room, dtype=np.int64)
    n_live = 0
    fills = np.empty(64, dtype=FILL_DT)
    n_fills = 0
    events = np.empty(64, dtype=EVENT_DT)
    cash = cash + 0.0
    size = 0.0
    price = 0.0
    centre = Centre(False, 0.0, 0.0, -1)
    rejected = 0
    # Step 1 runs on every bar and stays in this loop: a helper taking the arrays would cost
    # reference counting on every bar (twice the run time); steps 2 and 3 are helpers, called
    # only on the bars that need them.
    for t in range(n):
        # 1. the broker tries every pending order once, in queue order; each execution changes
        # cash and position before the next order is tried and queues a notification
        n_events = 0
        keep = 0
        for q in range(n_pending):
            k = pending[q]
            order = orders[k]
            if not order.limit:
                fill = market_fill_price_nb(order.side, open_[t], high[t], low[t], slippage)
            else:
                fill = limit_fill_price_nb(
                    order.side, order.price, open_[t], high[t], low[t], slippage
                )
            if np.isnan(fill):  # not reached on this bar: stays in the queue
                pending[keep] = k
                keep += 1
                continue
            cash, size, price, executed, comm, margin = execute_nb(
                order.remaining, fill, cash, size, price, commission
            )
            if executed != 0.0:
                _executed_nb(order, t, executed, fill, comm)
                events = _grow(events, n_events + 1)
                _event_nb(events[n_events], k, _EVENT_FILL, executed, fill, comm)
                n_events += 1
            if margin:
                order.status = STATUS_REJECTED
                events = _grow(events, n_events + 1)
                _event_nb(events[n_events], k, _EVENT_MARGIN, 0.0, np.nan, np.nan)
                n_events += 1
            status = order.status
            if status == STATUS_OPEN or status == STATUS_PARTIAL:  # noqa: SIM109 (numba)
                pending[keep] = k
                keep += 1
        n_pending = keep
        value = value_nb(cash, size, price, close[t])

        # 2. notifications, in the order the broker queued them
        if n_events:
            book = Book(orders, n_orders, pending, n_pending, live, n_live)
            book, fills, n_fills, margins = _notify_nb(
                book, events, n_events, fills, n_fills, t, centre, spacing_pct
            )
            orders, n_orders, pending, n_pending, live, n_live = book
            rejected += margins

        # 3. record the close, then decide: re-centre on the first bar and when the close
        # leaves the grid
        equity[t] = value
        position[t] = size
        c = close[t]
        if (
            not centre.centred
            or c > level_price_nb(centre.reference, levels, spacing_pct)
            or c < level_price_nb(centre.reference, -levels, spacing_pct)
        ):
            book = Book(orders, n_orders, pending, n_pending, live, n_live)
            book, centre = _recentre_nb(book, t, c, value, size, levels, spacing_pct, order_size)
            orders, n_orders, pending, n_pending, live, n_live = book
    return equity, position, orders[:n_orders].copy(), fills[:n_fills].copy(), rejected


@numba.njit(cache=True, inline="always")
def _executed_nb(order: Record, t: int, executed: float, fill: float, comm: float) -> None:
    """``executed`` units of ``order`` went through at ``fill`` on bar ``t``."""
    remaining = order.remaining - executed
    order.remaining = remaining
    order.status = STATUS_PARTIAL if remaining != 0.0 else STATUS_FILLED
    order.fill_bar = t
    order.fill_price = fill
    order.commission = comm


@numba.njit(cache=True, inline="always")
def _event_nb(event: Record, order: int, kind: int, size: float, price: float, comm: float) -> None:
    event.order = order
    event.kind = kind
    event.size = size
    event.price = price
    event.commission = comm


@numba.njit(cache=True)
def _notify_nb(
    book: Book,
    events: np.ndarray,
    n_events: int,
    fills: np.ndarray,
    n_fills: int,
    t: int,
    centre: Centre,
    spacing_pct: float,
) -> tuple[Book, np.ndarray, int, int]:
    """Step 2, the notifications in queue order: a fill is recorded and, if its order was a
    live grid order, the opposite order goes one level further; a rejection frees its level,
    and a rejected rebalancing buy cancels every live sell. Returns the book, the fills and
    how many rejections there were."""
    orders, n_orders, pending, n_pending, live, n_live = book
    rejected = 0
    for e in range(n_events):
        event = events[e]
        k = event.order
        if event.kind == _EVENT_FILL:
            fills = _grow(fills, n_fills + 1)
            fill = fills[n_fills]
            fill.bar = t
            fill.size = event.size
            fill.price = event.price
            fill.commission = event.commission
            n_fills += 1
            before = n_live
            n_live = _remove(live, n_live, k)
            if n_live < before:  # a live grid order: place the next one
                j = orders[k].level + (1 if event.size > 0.0 else -1)
                new_side = -1 if event.size > 0.0 else 1
                orders = _grow(orders, n_orders + 1)
                _limit_order_nb(
                    orders[n_orders], t, new_side, centre.unit, j, centre.reference, spacing_pct
                )
                pending = _grow(pending, n_pending + 1)
                pending[n_pending] = n_orders
                n_pending += 1
                live = _grow(live, n_live + 1)
                live[n_live] = n_orders
                n_live += 1
                n_orders += 1
        else:
            rejected += 1
            n_live = _remove(live, n_live, k)
            if k == centre.rebalance and orders[k].side > 0:
                # the inventory behind the sells never arrived: cancel them
                keep = 0
                for i in range(n_live):
                    s = live[i]
                    if orders[s].side < 0:
                        before = n_pending
                        n_pending = _remove(pending, n_pending, s)
                        if n_pending < before:
                            orders[s].status = STATUS_CANCELLED
                    else:
                        live[keep] = s
                        keep += 1
                n_live = keep
    return Book(orders, n_orders, pending, n_pending, live, n_live), fills, n_fills, rejected


@numba.njit(cache=True)
def _recentre_nb(
    book: Book,
    t: int,
    c: float,
    value: float,
    size: float,
    levels: int,
    spacing_pct: float,
    order_size: float,
) -> tuple[Book, Centre]:
    """Step 3, the strategy's re-centring on close ``c``: cancel every live order, size the
    grid from ``value``, rebalance the inventory with one market order, then place the buy
    limits below and the sell limits above the new reference."""
    orders, n_orders, pending, n_pending, live, n_live = book
    for i in range(n_live):
        s = live[i]
        before = n_pending
        n_pending = _remove(pending, n_pending, s)
        if n_pending < before:
            orders[s].status = STATUS_CANCELLED
    n_live = 0
    reference = c
    unit = order_size * value / c
    delta = levels * unit - size
    rebalance = -1
    orders = _grow(orders, n_orders + 2 * levels + 1)
    pending = _grow(pending, n_pending + 2 * levels + 1)
    live = _grow(live, 2 * levels)
    if abs(delta) > DUST * levels * unit:
        order = orders[n_orders]
        side = 1 if delta > 0 else -1
        order.bar = t
        order.side = side
        order.limit = False
        order.price = np.nan
        order.size = abs(delta)
        order.remaining = abs(delta) if side > 0 else -abs(delta)
        order.status = STATUS_OPEN
        order.fill_bar = -1
        order.fill_price = np.nan
        order.commission = np.nan
        order.level = 0
        rebalance = n_orders
        pending[n_pending] = n_orders
        n_pending += 1
        n_orders += 1
    for side in (1, -1):  # the buys below the reference, then the sells above it
        for j in range(1, levels + 1):
            _limit_order_nb(orders[n_orders], t, side, unit, -side * j, reference, spacing_pct)
            pending[n_pending] = n_orders
            n_pending += 1
            live[n_live] = n_orders
            n_live += 1
            n_orders += 1
    book = Book(orders, n_orders, pending, n_pending, live, n_live)
    return book, Centre(True, reference, unit, rebalance)


@numba.njit(cache=True)
def _limit_order_nb(
    order: Record,
    bar: int,
    side: int,
    size: float,
    level: int,
    reference: float,
    spacing_pct: float,
) -> None:
    """Fill in ``order`` as a grid limit order at ``level``. backtrader trades ``|size|``
    (``Strategy.buy`` takes ``abs``)."""
    order.bar = bar
    order.side = side
    order.limit = True
    order.price = level_price_nb(reference, level, spacing_pct)
    order.size = size
    order.remaining = abs(size) if side > 0 else -abs(size)
    order.status = STATUS_OPEN
    order.fill_bar = -1
    order.fill_price = np.nan
    order.commission = np.nan
    order.level = level
