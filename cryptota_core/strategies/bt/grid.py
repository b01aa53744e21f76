"""The backtrader implementation of ``grid`` (its spec and kernel:
:mod:`cryptota_core.strategies.grid`)."""

from __future__ import annotations

from typing import Any

from cryptota_core.strategies.base import Fill
from cryptota_core.strategies.bt.base import BaseBtStrategy
from cryptota_core.strategies.grid import GridParams

_DUST = 1e-12
"""Relative size below which an inventory difference is float noise, not an order."""


class GridBt(BaseBtStrategy):
    """Backtrader implementation of :class:`Grid` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg: GridParams = self.p.spec_params
        self.reference: float | None = None
        self.unit = 0.0
        self.live: dict[int, tuple[Any, int]] = {}  # order ref -> (order, level j)
        self.rebalance_ref: int | None = None
        self.centrings: list[int] = []  # bars at which the grid was (re-)centred

    def level_price(self, j: int) -> float:
        assert self.reference is not None
        return self.reference * (1.0 + j * self.cfg.spacing_pct / 100.0)

    def decide(self) -> None:
        close = float(self.data.close[0])
        n = self.cfg.levels
        if self.reference is None or close > self.level_price(n) or close < self.level_price(-n):
            self.recentre(close)

    def recentre(self, close: float) -> None:
        for order, _ in list(self.live.values()):
            self.cancel_order(order)
        self.live.clear()
        self.centrings.append(self.bar)
        self.reference = close
        self.unit = self.cfg.order_size * float(self.broker.getvalue()) / close
        n = self.cfg.levels
        delta = n * self.unit - float(self.position.size)
        self.rebalance_ref = None
        if abs(delta) > _DUST * n * self.unit:
            order = self.submit_market("buy" if delta > 0 else "sell", abs(delta))
            self.rebalance_ref = order.ref
        for k in range(1, n + 1):
            self._place("buy", -k)
        for k in range(1, n + 1):
            self._place("sell", k)

    def _place(self, side: str, j: int) -> None:
        order = self.submit_limit(side, self.unit, self.level_price(j))
        self.live[order.ref] = (order, j)

    def on_fill(self, order: Any, fill: Fill) -> None:
        placed = self.live.pop(order.ref, None)
        if placed is None:  # the rebalancing market order
            return
        j = placed[1]
        if fill.size > 0:
            self._place("sell", j + 1)
        else:
            self._place("buy", j - 1)

    def on_reject(self, order: Any) -> None:
        self.live.pop(order.ref, None)
        if order.ref == self.rebalance_ref and order.isbuy():
            # The inventory backing the sell side never arrived: selling would go short.
            for ref, (sell, _) in list(self.live.items()):
                if sell.issell():
                    self.cancel_order(sell)
                    del self.live[ref]
