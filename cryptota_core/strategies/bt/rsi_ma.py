"""The backtrader implementation of ``rsi_ma`` (its spec and kernel:
:mod:`cryptota_core.strategies.rsi_ma`)."""

from __future__ import annotations

import backtrader as bt

from cryptota_core.strategies.bt.base import LongOnlyStrategy
from cryptota_core.strategies.rsi_ma import RsiMaParams


class RsiMaBt(LongOnlyStrategy):
    """Backtrader implementation of :class:`RsiMa`."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg: RsiMaParams = self.p.spec_params
        self.rsi = bt.indicators.RSI(self.data.close, period=self.cfg.period, safediv=True)
        self.sma = bt.indicators.SMA(self.data.close, period=self.cfg.ma_period)

    def should_enter_long(self) -> bool:
        return bool(self.rsi[0] < self.cfg.oversold and self.data.close[0] > self.sma[0])

    def should_exit_long(self) -> bool:
        return bool(self.rsi[0] > self.cfg.overbought)
