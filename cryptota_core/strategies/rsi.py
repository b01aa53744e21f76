"""``rsi``: long-only RSI mean reversion.

Enter long when Wilder's RSI of the close drops below ``oversold``; exit when it rises above
``overbought``. Both are levels, not crossings, tested on the bar that just closed; the order
fills at the next open (DESIGN §5). RSI is backtrader's ``RSI(period, safediv=True)``: seeded
with a simple mean of the first ``period`` up/down moves, then Wilder-smoothed; no losses → 100,
no moves at all → 50.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numba
import numpy as np
from pydantic import Field, model_validator

from cryptota_core.broker import BrokerSettings
from cryptota_core.kernels.indicators import rsi_nb, rsi_table_nb, sma_nb, sma_table_nb
from cryptota_core.kernels.signals import level_signals_nb
from cryptota_core.kernels.sweep import level_sweep_nb
from cryptota_core.strategies.base import Strategy, StrategyParams
from cryptota_core.strategies.kernel import (
    TABLE_BYTES,
    Prices,
    SignalKernel,
    SweepRows,
    allocate_rows,
    batches,
    distinct_rows,
    indicator_table,
    long_costs,
    store_rows,
)
from cryptota_core.strategies.registry import register

TILE_BARS = 8192
"""Bars each parallel lane of level sets crosses before moving on: the prices and indicator
rows of a tile (~64 KB each) stay in the core's L2 cache while all its sets run."""


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


def rsi_warmup(period: int) -> int:
    """RSI(period) is first defined on bar ``period`` (it needs ``period`` price changes)."""
    return period


class RsiLevelKernel(SignalKernel):
    """``rsi``'s kernel (and, with :meth:`trend_period`, ``rsi_ma``'s): RSI level signals; the
    sweep computes each RSI (and SMA) row once per distinct period and runs the sets tile by
    tile (:func:`~cryptota_core.kernels.sweep.level_sweep_nb`)."""

    def trend_period(self, params: RsiParams) -> int | None:
        """The SMA length of the trend filter (``close > SMA`` to enter), None for none."""
        return None

    def signals(self, params: StrategyParams, prices: Prices) -> tuple[np.ndarray, np.ndarray]:
        assert isinstance(params, RsiParams)
        close = prices.close
        rsi = rsi_nb(close, int(params.period))
        ma_period = self.trend_period(params)
        trend = close if ma_period is None else sma_nb(close, int(ma_period))
        return level_signals_nb(
            rsi,
            float(params.oversold),
            float(params.overbought),
            close,
            trend,
            ma_period is not None,
        )

    def sweep(
        self,
        params: Sequence[StrategyParams],
        prices: Prices,
        warmups: np.ndarray,
        edges: np.ndarray,
        broker: BrokerSettings,
    ) -> SweepRows:
        close = prices.close
        sets = [p for p in params if isinstance(p, RsiParams)]
        trend_periods = [self.trend_period(m) for m in sets]
        use_trend = all(p is not None for p in trend_periods)
        keys = [(int(m.period), int(p or 0)) for m, p in zip(sets, trend_periods, strict=True)]
        rows = allocate_rows(len(params), edges.shape[0] - 1)
        for batch in batches(keys, max(2, TABLE_BYTES // (8 * close.shape[0]))):
            rsi_periods, rsi_row = distinct_rows([keys[i][0] for i in batch])
            rsi_table = indicator_table(close, rsi_periods, rsi_table_nb)
            if use_trend:
                ma_periods, trend_row = distinct_rows([keys[i][1] for i in batch])
                trend_table = indicator_table(close, ma_periods, sma_table_nb)
            else:
                trend_row = np.zeros(len(batch), dtype=np.int64)
                trend_table = close[None, :]
            got = level_sweep_nb(
                *prices,
                rsi_table,
                trend_table,
                rsi_row,
                trend_row,
                np.array([float(sets[i].oversold) for i in batch]),
                np.array([float(sets[i].overbought) for i in batch]),
                warmups[batch],
                use_trend,
                edges,
                *long_costs(broker),
                _lanes(len(batch)),
                TILE_BARS,
            )
            store_rows(rows, batch, got)
        return rows


def _lanes(count: int) -> np.ndarray:
    """Sets 0..count-1 (already sorted by indicator rows) dealt to one lane per thread, so both
    cores cross the same rows at the same time; −1 pads the last lane. The deal snakes (0, 1,
    1, 0, 0, 1, …): neighbours in the sort differ by one step of the last parameter
    (overbought), and a higher level holds longer, so plain round-robin gave one lane the
    longer set of every pair (5 % more work, measured on 1,000 sets × a year of 1m)."""
    n_lanes = max(1, min(numba.get_num_threads(), count))
    width = -(-count // n_lanes)
    lanes = np.full((n_lanes, width), -1, dtype=np.int64)
    for i in range(count):
        column, position = divmod(i, n_lanes)
        lane = position if column % 2 == 0 else n_lanes - 1 - position
        lanes[lane, column] = i
    return lanes


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
    bt_class = "cryptota_core.strategies.bt.rsi:RsiBt"
    kernel = RsiLevelKernel()
    description: ClassVar[str] = "enter below RSI oversold, exit above overbought (long only)"

    def warmup(self, params: StrategyParams) -> int:
        assert isinstance(params, RsiParams)
        return rsi_warmup(params.period)
