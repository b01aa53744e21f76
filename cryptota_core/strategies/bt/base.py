"""The backtrader bases that implement DESIGN §5 once: every backtrader implementation is a
subclass of :class:`LongOnlyStrategy` or :class:`LongShortStrategy` (or, for an order book such
as the grid, of :class:`BaseBtStrategy`) that only answers "enter now?" / "exit now?" on the bar
that just closed. Order types, sizing, warm-up gating and bookkeeping live here, so every
strategy trades by exactly the same rules and the fast engine has one set of rules to mirror.

Apart from the specs (:mod:`cryptota_core.strategies.base`) because importing backtrader costs a
fifth of a second: the sweep and the fast engine never need it.
"""

from __future__ import annotations

import math
from typing import Any

import backtrader as bt

from cryptota_core.broker import DEFAULT_BROKER
from cryptota_core.strategies.base import Fill, OrderRecord

__all__ = ["BaseBtStrategy", "LongOnlyStrategy", "LongShortStrategy"]


class BaseBtStrategy(bt.Strategy):
    """Bookkeeping shared by every backtrader implementation.

    Records the broker value and position at every bar close (the equity curve: one value per
    candle, recorded *before* this bar's decision, so bar 0 is the starting cash), every fill,
    every order's fate and the number of rejected orders. Calls :meth:`on_bar` and
    :meth:`decide` only from bar ``warmup`` on, so no strategy can trade during warm-up even if
    its indicators are defined earlier. Backtrader params: ``spec_params`` (the validated
    :class:`StrategyParams`), ``warmup`` (bars) and ``stake`` (fraction of equity per entry).
    """

    params = (("spec_params", None), ("warmup", 0), ("stake", DEFAULT_BROKER.stake))

    def __init__(self) -> None:
        self.equity_values: list[float] = []
        self.position_sizes: list[float] = []
        self.fills: list[Fill] = []
        self.orders_log: dict[int, OrderRecord] = {}
        self.rejected_orders = 0

    # ------------------------------------------------------------------ backtrader callbacks
    def prenext(self) -> None:
        """Bars before backtrader's own minimum period: only recorded (nothing can trade)."""
        self._record()

    def next(self) -> None:
        self._record()
        if self.bar >= self.p.warmup:
            self.on_bar()
            self.decide()

    def notify_order(self, order: Any) -> None:
        record = self.orders_log.get(order.ref)
        if order.status in (order.Completed, order.Partial):
            # The execution bits carry the exact fill price; ``order.executed.price`` is a
            # size-weighted average that can be one ulp off even for a single fill.
            for bit in order.executed.iterpending():
                fill = Fill(
                    bar=self.bar,
                    size=float(bit.size),
                    price=float(bit.price),
                    commission=float(bit.comm),
                )
                self.fills.append(fill)
                if record is not None:
                    record.status = "filled" if order.status == order.Completed else "partial"
                    record.fill_bar = fill.bar
                    record.fill_price = fill.price
                    record.commission = fill.commission
                self.on_fill(order, fill)
        elif order.status in (order.Margin, order.Rejected):
            self.rejected_orders += 1
            if record is not None:
                record.status = "rejected"
            self.on_reject(order)
        elif order.status in (order.Canceled, order.Expired) and record is not None:
            record.status = "cancelled" if order.status == order.Canceled else "expired"

    # ------------------------------------------------------------------------------- hooks
    def on_bar(self) -> None:
        """Update per-bar state (called every bar from warm-up on, before :meth:`decide`)."""

    def decide(self) -> None:
        """Place orders for the bar that just closed. The bases below implement it."""

    def on_fill(self, order: Any, fill: Fill) -> None:
        """An order of this strategy filled (called before the fill bar's :meth:`decide`)."""

    def on_reject(self, order: Any) -> None:
        """An order was rejected for lack of cash at fill."""

    # ----------------------------------------------------------------------------- helpers
    @property
    def bar(self) -> int:
        """0-based index of the candle that just closed (the candle of a fill, in callbacks)."""
        return len(self) - 1

    def entry_size(self) -> float:
        """DESIGN §5: stake × equity at the close of this bar ÷ this bar's close."""
        return float(self.p.stake * self.broker.getvalue() / self.data.close[0])

    def submit_market(self, side: str, size: float) -> Any:
        """A market order for ``size`` (> 0) base units; fills at the next bar's open."""
        order = self.buy(size=size) if side == "buy" else self.sell(size=size)
        self._log_order(order, side, "market", math.nan, size)
        return order

    def submit_limit(self, side: str, size: float, price: float) -> Any:
        """A limit order, live from the next bar until filled or cancelled. Backtrader fills a
        buy at the open if the open is at or below ``price``, else at ``price`` if the low
        reaches it (mirror image for sells)."""
        exectype = bt.Order.Limit
        if side == "buy":
            order = self.buy(size=size, price=price, exectype=exectype)
        else:
            order = self.sell(size=size, price=price, exectype=exectype)
        self._log_order(order, side, "limit", price, size)
        return order

    def close_position(self) -> Any:
        """A market order flattening the whole position at the next open."""
        size = float(self.position.size)
        if size == 0:
            return None
        order = self.close()
        self._log_order(order, "sell" if size > 0 else "buy", "market", math.nan, abs(size))
        return order

    def cancel_order(self, order: Any) -> None:
        """Cancel a live order now. The backtest broker cancels synchronously; the record is
        updated here because the notification would only arrive on the next bar, which never
        comes when this is the last one."""
        self.cancel(order)
        record = self.orders_log.get(order.ref)
        if record is not None and order.status == order.Canceled:
            record.status = "cancelled"

    def _log_order(self, order: Any, side: str, kind: str, price: float, size: float) -> None:
        if order is not None:
            self.orders_log[order.ref] = OrderRecord(self.bar, side, kind, float(price), size)

    def _record(self) -> None:
        self.equity_values.append(float(self.broker.getvalue()))
        self.position_sizes.append(float(self.position.size))


class LongOnlyStrategy(BaseBtStrategy):
    """Spot, long-only: flat → :meth:`should_enter_long` → market buy of the DESIGN §5 size;
    long → :meth:`should_exit_long` → market sell of the whole position. One position at a
    time; both hooks see only the bar that just closed and everything before it."""

    def should_enter_long(self) -> bool:
        raise NotImplementedError

    def should_exit_long(self) -> bool:
        return False

    def decide(self) -> None:
        size = self.position.size
        if size == 0:
            if self.should_enter_long():
                self.submit_market("buy", self.entry_size())
        elif size > 0 and self.should_exit_long():
            self.close_position()


class LongShortStrategy(LongOnlyStrategy):
    """Long and short. Flat: enter long, else enter short. Long: an entry-short signal reverses
    (close, then open short, both at the next open, two fills), else an exit-long signal closes.
    Short: mirror image. New positions are sized as in DESIGN §5 from this bar's equity."""

    def should_enter_short(self) -> bool:
        return False

    def should_exit_short(self) -> bool:
        return False

    def decide(self) -> None:
        size = self.position.size
        if size == 0:
            if self.should_enter_long():
                self.submit_market("buy", self.entry_size())
            elif self.should_enter_short():
                self.submit_market("sell", self.entry_size())
        elif size > 0:
            if self.should_enter_short():
                self.close_position()
                self.submit_market("sell", self.entry_size())
            elif self.should_exit_long():
                self.close_position()
        elif self.should_enter_long():
            self.close_position()
            self.submit_market("buy", self.entry_size())
        elif self.should_exit_short():
            self.close_position()
