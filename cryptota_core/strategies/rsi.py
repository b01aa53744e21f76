"""``rsi``: long-only RSI mean reversion.

Enter long when Wilder's RSI of the close drops below ``oversold``; exit when it rises above
``overbought``. Both are levels, not crossings, tested on the bar that just closed; the order
fills at the next open (DESIGN §5). RSI is backtrader's ``RSI(period, safediv=True)``: seeded
with a simple mean of the first ``period`` up/down moves, then Wilder-smoothed; no losses → 100,
no moves at all → 50.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import backtrader as bt
from pydantic import Field, model_validator

from cryptota_core.strategies.base import LongOnlyStrategy, Strategy, StrategyParams
from cryptota_core.strategies.registry import register


class RsiParams(StrategyParams):
    """``period`` bars of RSI; enter below ``oversold``, exit above ``overbought`` (0-100)."""

    period: int = Field(14, ge=2, le=1000, description="RSI look-back in bars")
    oversold: float = Field(30.0, gt=0, lt=100, description="enter long below this RSI")
    overbought: float = Field(70.0, gt=0, lt=100, description="exit above this RSI")

    @model_validator(mode="after")
    def _bands_ordered(self) -> Self:
        if self.oversold >= self.overbought:
            raise ValueError(
                f"oversold ({self.oversold:g}) must be below overbought ({self.overbought:g})"
            )
        return self


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


def rsi_warmup(period: int) -> int:
    """RSI(period) is first defined on bar ``period`` (it needs ``period`` price changes)."""
    return period


@register
class Rsi(Strategy):
    """Long-only RSI mean reversion (see the module docstring)."""

    name: ClassVar[str] = "rsi"
    params_model: ClassVar[type[StrategyParams]] = RsiParams
    default_grid: ClassVar[dict[str, list[Any]]] = {
        "period": [7, 14, 21],
        "oversold": [20, 30],
        "overbought": [70, 80],
    }
    slug_abbrev: ClassVar[dict[str, str]] = {"period": "p", "oversold": "os", "overbought": "ob"}
    bt_class = RsiBt
    description: ClassVar[str] = "enter below RSI oversold, exit above overbought (long only)"

    def warmup(self, params: StrategyParams) -> int:
        assert isinstance(params, RsiParams)
        return rsi_warmup(params.period)
