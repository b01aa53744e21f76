"""backtrader's ``BackBroker`` in numba: fill prices, cash, positions and valuation.

Our broker set-up (see :mod:`cryptota_core.backtest.engine`) is a stock-like percent
commission, leverage 1, ``shortcash`` on, ``checksubmit`` off and ``set_slippage_perc(slippage,
slip_open=True, slip_limit=True, slip_match=True, slip_out=False)``. Under it:

* a **market** buy fills at ``open × (1 + slippage)`` capped at the high, a sell at ``open × (1
  − slippage)`` floored at the low (no slippage: the open);
* a **limit** buy fills at the open when the open is at or below the limit (slipped, capped at
  ``min(high, limit)``), else at the limit when the low reaches it; a limit sell fills at the
  open when the open is at or above the limit (slipped, floored at the limit), else at the limit
  when the high reaches it;
* an execution first closes what it can of the opposite position (crediting ``−closed × entry +
  pnl − commission``, never checked), then opens the rest, which is rejected (``Margin``) when
  ``cash − opened × price − |opened| × commission × price < 0``: a partly closing order is then
  a partial fill followed by a rejection;
* the value at a close is ``cash + ((size × close − upnl) + upnl)`` when long, ``cash + size ×
  close`` otherwise.

Every expression keeps backtrader's operand order, so the arithmetic is bit-identical.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeAlias

import numba
import numpy as np

STATUS_OPEN = 0
STATUS_FILLED = 1
STATUS_REJECTED = 2
STATUS_CANCELLED = 3
STATUS_PARTIAL = 4
STATUS_NAMES = {
    STATUS_OPEN: "open",
    STATUS_FILLED: "filled",
    STATUS_REJECTED: "rejected",
    STATUS_CANCELLED: "cancelled",
    STATUS_PARTIAL: "partial",
}

Record: TypeAlias = Any
"""One row of a structured array (:data:`ORDER_DT`, ...) inside a kernel, read and written by
field name (``order.status = ...``). NumPy's stubs cannot type a record's fields, so kernels
annotate records with this alias; numba types them exactly from the dtype."""

ORDER_DT = np.dtype(
    [
        ("bar", np.int64),  # bar after whose close (or in whose notifications) it was placed
        ("side", np.int64),  # +1 buy, -1 sell
        ("limit", np.bool_),  # a limit order (else market)
        ("price", np.float64),  # limit price, NaN for market orders
        ("size", np.float64),  # size as the strategy logged it (positive)
        ("remaining", np.float64),  # signed units still to execute (backtrader's remsize)
        ("status", np.int64),  # STATUS_*
        ("fill_bar", np.int64),  # bar of the last execution, -1 if none
        ("fill_price", np.float64),  # price of the last execution, NaN if none
        ("commission", np.float64),  # commission of the last execution, NaN if none
        ("level", np.int64),  # grid level j of a grid limit order, else 0
    ],
    align=True,
)
"""One order and its fate, as every simulation kernel records it (numba record array, the
shape of vectorbt's ``order_dt``); the fast engine turns the rows into ``OrderRecord``."""

FILL_DT = np.dtype(
    [
        ("bar", np.int64),
        ("size", np.float64),  # signed: buy > 0, sell < 0
        ("price", np.float64),
        ("commission", np.float64),
    ],
    align=True,
)
"""One execution, in the order the strategy was notified of it (the fast engine's ``Fill``)."""


class Prices(NamedTuple):
    """The candles' price columns, contiguous float64 arrays of one length (the OHLC every
    simulation reads: fills at the open or within the range, valuation at the close)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray


# ------------------------------------------------------------------------------ fill prices
@numba.njit(cache=True)
def market_fill_price_nb(
    side: int, open_: float, high: float, low: float, slippage: float
) -> float:
    """Fill price of a market order at this bar's open (``_try_exec_market`` + ``_slip_up`` /
    ``_slip_down`` with ``slip_match``)."""
    p = open_
    if slippage:
        if side > 0:
            pslip = p * (1 + slippage)
            p = pslip if pslip <= high else high
        else:
            pslip = p * (1 - slippage)
            p = pslip if pslip >= low else low
    return p


@numba.njit(cache=True)
def limit_fill_price_nb(
    side: int, limit: float, open_: float, high: float, low: float, slippage: float
) -> float:
    """Fill price of a limit order on this bar, NaN when the bar does not reach the limit
    (``_try_exec_limit``; note the sell side floors the slipped open at the *limit*, not at
    ``max(low, limit)`` as backtrader computes and then ignores)."""
    if side > 0:
        if limit >= open_:
            pmax = limit if limit < high else high  # Python's min(high, limit)
            p = open_
            if slippage:
                pslip = p * (1 + slippage)
                p = pslip if pslip <= pmax else pmax
            return p
        if limit >= low:
            return limit
        return np.nan
    if limit <= open_:
        p = open_
        if slippage:
            pslip = p * (1 - slippage)
            p = pslip if pslip >= limit else limit
        return p
    if limit <= high:
        return limit
    return np.nan


# ------------------------------------------------------------- long-only market positions
@numba.njit(cache=True)
def long_buy_nb(cash: float, qty: float, price: float, commission: float) -> tuple[float, float]:
    """Cash after buying ``qty`` (> 0) from flat at ``price``, and the commission; the cash is
    negative when the broker rejects the order (the caller then keeps the old cash)."""
    new_cash = cash - abs(qty) * price / 1.0
    comm = abs(qty) * commission * price
    new_cash -= comm
    return new_cash, comm


@numba.njit(cache=True)
def long_sell_nb(
    cash: float, size: float, entry: float, price: float, commission: float
) -> tuple[float, float]:
    """Cash after selling the whole long ``size`` bought at ``entry``, and the commission."""
    closed = -size
    closed_value = abs(closed) * entry
    pnl = -closed * (price - entry) * 1.0
    cash += closed_value / 1.0 + pnl
    comm = abs(closed) * commission * price
    cash -= comm
    cash += 0.0
    return cash, comm


@numba.njit(cache=True, inline="always")
def long_value_nb(cash: float, size: float, entry: float, close: float) -> float:
    """Broker value at a close with a long ``size`` (>= 0) bought at ``entry``."""
    if size > 0.0:
        dvalue = size * close
        unrealized = size * (close - entry) * 1.0
        value_unlever = 0.0 + (dvalue - unrealized) / 1.0
        value_unlever += unrealized
    else:
        value_unlever = 0.0
    return cash + value_unlever


@numba.njit(cache=True)
def simulate_long_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    entry_signal: np.ndarray,
    exit_signal: np.ndarray,
    warmup: int,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DESIGN §5 long-only market-order simulation (``LongOnlyStrategy`` on ``BackBroker``).

    Signals are read on bar ``t`` (from ``warmup`` on) and fill at the open of ``t + 1``. Returns
    ``(equity, position, orders)``: the value and position size at every close, then one
    :data:`ORDER_DT` row per order (fill fields −1/NaN unless filled)."""
    n = close.shape[0]
    equity = np.empty(n)
    position = np.empty(n)
    orders = np.empty(n, dtype=ORDER_DT)
    n_orders = 0
    pending = -1  # index of the order waiting for the next open
    size = 0.0  # position size
    price = 0.0  # position (entry) price
    for t in range(n):
        if pending >= 0:
            order = orders[pending]
            pending = -1
            p = market_fill_price_nb(order.side, open_[t], high[t], low[t], slippage)
            if order.side > 0:
                new_cash, comm = long_buy_nb(cash, order.size, p, commission)
                if new_cash < 0.0:
                    order.status = STATUS_REJECTED
                    continue_fill = False
                else:
                    cash = new_cash
                    size = order.size
                    price = p
                    continue_fill = True
                    comm = 0.0 + comm
            else:
                cash, comm = long_sell_nb(cash, size, price, p, commission)
                comm = comm + 0.0
                size = 0.0
                price = 0.0
                continue_fill = True
            if continue_fill:
                order.status = STATUS_FILLED
                order.remaining = 0.0
                order.fill_bar = t
                order.fill_price = p
                order.commission = comm
        value = long_value_nb(cash, size, price, close[t])
        equity[t] = value
        position[t] = size
        if t < warmup:
            continue
        if size == 0.0:
            if entry_signal[t]:
                qty = stake * value / close[t]
                if qty:
                    market_order_nb(orders[n_orders], t, 1, qty)
                    pending = n_orders
                    n_orders += 1
        elif size > 0.0 and exit_signal[t]:
            market_order_nb(orders[n_orders], t, -1, abs(size))
            pending = n_orders
            n_orders += 1
    return equity, position, orders[:n_orders].copy()


@numba.njit(cache=True, inline="always")
def market_order_nb(order: Record, bar: int, side: int, size: float) -> None:
    """Fill in ``order`` (an :data:`ORDER_DT` record) as a new market order of ``size`` > 0."""
    order.bar = bar
    order.side = side
    order.limit = False
    order.price = np.nan
    order.size = size
    order.remaining = size if side > 0 else -size
    order.status = STATUS_OPEN
    order.fill_bar = -1
    order.fill_price = np.nan
    order.commission = np.nan
    order.level = 0


# --------------------------------------------------------------- general positions (grid)
@numba.njit(cache=True)
def position_update_nb(
    size: float, price: float, delta: float, fill: float
) -> tuple[float, float, float, float]:
    """backtrader's ``Position.update``: ``(new size, new price, opened, closed)`` after
    ``delta`` units trade at ``fill``; ``opened`` and ``closed`` carry ``delta``'s sign."""
    old = size
    size = old + delta
    if size == 0.0:
        return size, 0.0, 0.0, delta
    if old == 0.0:
        return size, fill, delta, 0.0
    if old > 0.0:
        if delta > 0.0:
            return size, (price * old + delta * fill) / size, delta, 0.0
        if size > 0.0:
            return size, price, 0.0, delta
        return size, fill, size, -old
    if delta < 0.0:
        return size, (price * old + delta * fill) / size, delta, 0.0
    if size < 0.0:
        return size, price, 0.0, delta
    return size, fill, size, -old


@numba.njit(cache=True)
def execute_nb(
    remaining: float, fill: float, cash: float, size: float, price: float, commission: float
) -> tuple[float, float, float, float, float, bool]:
    """``BackBroker._execute`` of an order with signed ``remaining`` units at ``fill``.

    Returns ``(cash, size, price, executed, commission, margin)``: the broker's cash and position
    after it, the signed executed units (0 when nothing executed) and their commission, and
    whether the opening part was rejected for lack of cash (backtrader's ``Margin``)."""
    _, _, opened, closed = position_update_nb(size, price, remaining, fill)
    closed_comm = 0.0
    if closed != 0.0:
        pnl = -closed * (fill - price) * 1.0
        closed_value = -closed * price
        cash += closed_value + pnl
        closed_comm = abs(closed) * commission * fill
        cash -= closed_comm
        cash += 0.0
    opened_comm = 0.0
    margin = False
    if opened != 0.0:
        new_size = size + remaining
        new_cash = cash - opened * fill
        opened_comm = abs(opened) * commission * fill
        new_cash -= opened_comm
        if new_cash < 0.0:
            margin = True
            opened = 0.0
            opened_comm = 0.0
        else:
            if abs(new_size) > abs(opened):
                new_cash += 0.0
            cash = new_cash
    executed = closed + opened
    comm = closed_comm + opened_comm
    if executed != 0.0:
        size, price, _, _ = position_update_nb(size, price, executed, fill)
    return cash, size, price, executed, comm, margin


@numba.njit(cache=True)
def value_nb(cash: float, size: float, price: float, close: float) -> float:
    """``BackBroker._get_value`` of one position (long, short or flat) at ``close``."""
    dvalue = size * close
    unrealized = size * (close - price) * 1.0
    if dvalue > 0.0:
        value_unlever = 0.0 + (dvalue - unrealized) / 1.0
        value_unlever += unrealized
    else:
        value_unlever = 0.0 + dvalue
    return cash + value_unlever
