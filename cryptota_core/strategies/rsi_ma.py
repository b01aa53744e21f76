"""``rsi_ma``: RSI entry confirmed by trend.

Like ``rsi``, but an oversold RSI only enters long while the close is above its simple moving
average of ``ma_period`` bars (buy dips in an up-trend). The exit is ``rsi``'s: RSI above
``overbought``. Signals on the just-closed bar, fills at the next open.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from cryptota_core.strategies.base import Strategy, StrategyParams
from cryptota_core.strategies.registry import register
from cryptota_core.strategies.rsi import RsiLevelKernel, RsiParams, rsi_warmup


class RsiMaParams(RsiParams):
    """:class:`RsiParams` plus the trend filter's SMA length."""

    ma_period: int = Field(50, ge=2, le=5000, description="SMA look-back of the trend filter")


class RsiMaKernel(RsiLevelKernel):
    """``rsi``'s kernel with the trend filter: enter only while the close is above the SMA."""

    def trend_period(self, params: RsiParams) -> int | None:
        assert isinstance(params, RsiMaParams)
        return params.ma_period


@register
class RsiMa(Strategy):
    """RSI entry confirmed by close above SMA (see the module docstring)."""

    name: ClassVar[str] = "rsi_ma"
    params_model: ClassVar[type[StrategyParams]] = RsiMaParams
    default_grid: ClassVar[dict[str, list[Any]]] = {
        "period": [7, 14],
        "oversold": [25, 30],
        "overbought": [70, 75],
        "ma_period": [50, 100],
    }
    slug_abbrev: ClassVar[dict[str, str]] = {
        "period": "p",
        "oversold": "os",
        "overbought": "ob",
        "ma_period": "ma",
    }
    bt_class = "cryptota_core.strategies.bt.rsi_ma:RsiMaBt"
    kernel = RsiMaKernel()
    description: ClassVar[str] = "RSI oversold entry only while close > SMA; RSI overbought exit"

    def warmup(self, params: StrategyParams) -> int:
        """RSI is defined from bar ``period``, SMA(n) from bar ``n - 1``: the later of the two."""
        assert isinstance(params, RsiMaParams)
        return max(rsi_warmup(params.period), params.ma_period - 1)
