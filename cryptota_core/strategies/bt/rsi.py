"""The backtrader implementation of ``rsi`` (its spec and kernel:
:mod:`cryptota_core.strategies.rsi`)."""

from __future__ import annotations

import backtrader as bt

from cryptota_core.strategies.bt.base import LongOnlyStrategy
from cryptota_core.strategies.rsi import RsiParams


class RsiBt(LongOnlyStrategy):
    """Backtrader implementation of :class:`Rsi`."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg: RsiParams = self.p.spec_params
        self.rsi = bt.indicators.RSI(self.data.close, period=self.cfg.period, safediv=True)

    def should_enter_long(self) -> bool:
        return bool(self.rsi[0] < self.cfg.oversold)

    def should_exit_long(self) -> bool:
        return bool(self.rsi[0] > self.cfg.overbought)
