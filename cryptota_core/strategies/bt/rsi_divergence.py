"""The backtrader implementation of ``rsi_divergence`` (its spec and kernel:
:mod:`cryptota_core.strategies.rsi_divergence`)."""

from __future__ import annotations

from typing import Any

import backtrader as bt

from cryptota_core.strategies.bt.base import LongOnlyStrategy
from cryptota_core.strategies.rsi_divergence import RsiDivergenceParams


class RsiDivergenceBt(LongOnlyStrategy):
    """Backtrader implementation of :class:`RsiDivergence`. Keeps the last confirmed pivot low
    and high as (bar, price, RSI); :meth:`on_bar` confirms at most one of each per bar."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg: RsiDivergenceParams = self.p.spec_params
        self.rsi = bt.indicators.RSI(self.data.close, period=self.cfg.period, safediv=True)
        self.last_low: tuple[int, float, float] | None = None
        self.last_high: tuple[int, float, float] | None = None
        self.bullish = False
        self.bearish = False

    def on_bar(self) -> None:
        w = self.cfg.pivot_window
        size = 2 * w + 1
        centre = self.bar - w
        self.bullish = self.bearish = False

        lows = list(self.data.low.get(size=size))
        if _first_extreme(lows, min) == w:
            pivot = (centre, lows[w], float(self.rsi[-w]))
            prev = self.last_low
            if prev is not None and centre - prev[0] <= self.cfg.max_gap:
                self.bullish = pivot[1] < prev[1] and pivot[2] > prev[2]
            self.last_low = pivot

        highs = list(self.data.high.get(size=size))
        if _first_extreme(highs, max) == w:
            pivot = (centre, highs[w], float(self.rsi[-w]))
            prev = self.last_high
            if prev is not None and centre - prev[0] <= self.cfg.max_gap:
                self.bearish = pivot[1] > prev[1] and pivot[2] < prev[2]
            self.last_high = pivot

    def should_enter_long(self) -> bool:
        return self.bullish

    def should_exit_long(self) -> bool:
        return self.bearish


def _first_extreme(values: list[float], pick: Any) -> int:
    """Index of the first occurrence of ``pick(values)`` (``min`` or ``max``)."""
    return values.index(pick(values))
