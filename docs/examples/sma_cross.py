"""``sma_cross``: long while the fast simple moving average is above the slow one.

Enter long when the fast SMA crosses above the slow SMA on the bar that just closed; exit when it
crosses back below. The order fills at the next bar's open, sized and charged as every strategy
is (DESIGN §5); the base class does all of that.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import backtrader as bt
from pydantic import Field, model_validator

from cryptota_core.strategies import LongOnlyStrategy, Strategy, StrategyParams, register


class SmaCrossParams(StrategyParams):
    """Lengths of the two moving averages, in bars."""

    fast: int = Field(10, ge=1, le=1000, description="fast SMA length")
    slow: int = Field(30, ge=2, le=5000, description="slow SMA length")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> Self:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")
        return self


class SmaCrossBt(LongOnlyStrategy):
    """The backtrader side: build indicators once, answer enter/exit for the closed bar."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg: SmaCrossParams = self.p.spec_params
        fast = bt.indicators.SMA(self.data.close, period=self.cfg.fast)
        slow = bt.indicators.SMA(self.data.close, period=self.cfg.slow)
        self.cross = bt.indicators.CrossOver(fast, slow)  # +1 up-cross, -1 down-cross, else 0

    def should_enter_long(self) -> bool:
        return bool(self.cross[0] > 0)

    def should_exit_long(self) -> bool:
        return bool(self.cross[0] < 0)


@register
class SmaCross(Strategy):
    """The spec: name, parameters, grid, slug keys, warm-up and the backtrader class."""

    name: ClassVar[str] = "sma_cross"
    params_model: ClassVar[type[StrategyParams]] = SmaCrossParams
    default_grid: ClassVar[dict[str, list[Any]]] = {"fast": [5, 10, 20], "slow": [30, 60]}
    slug_abbrev: ClassVar[dict[str, str]] = {"fast": "f", "slow": "s"}
    bt_class = SmaCrossBt
    description: ClassVar[str] = "long while SMA(fast) is above SMA(slow)"

    def warmup(self, params: StrategyParams) -> int:
        """SMA(slow) is defined from bar ``slow - 1``; a cross also needs the bar before it."""
        assert isinstance(params, SmaCrossParams)
        return params.slow
