"""``rsi_divergence``: long on bullish RSI divergence, flat on bearish divergence (long only).

Pivots. Bar *c* is a pivot low when its low is the lowest of the ``2w + 1`` bars ``c-w .. c+w``
and strictly lower than every bar to its left (``w`` = ``pivot_window``; the first of equal lows
wins); a pivot high is the mirror image on highs. A pivot needs the ``w`` bars after it, so it is
**confirmed on bar c + w** and only used from then on: nothing here ever reads a bar that has not
closed yet.

Signals, evaluated on the confirming bar ``t = c + w``:

* bullish divergence: the new pivot low is lower than the previous pivot low, while RSI at the
  new pivot is higher than RSI at the previous one, and the two pivots are at most ``max_gap``
  bars apart → enter long (when flat);
* bearish divergence: a higher pivot high with a lower RSI → exit the long.

Bearish divergence exits rather than shorts: the strategy trades spot, like ``rsi``. RSI is
``bt.indicators.RSI(period, safediv=True)`` of the close, read at the pivot bar. Warm-up: the
first bar that can confirm a pivot whose RSI is defined and whose window lies inside the data,
``max(period + w, 2w)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numba
import numpy as np
from pydantic import Field, model_validator

from cryptota_core.broker import BrokerSettings
from cryptota_core.kernels.indicators import rsi_nb, rsi_table_nb
from cryptota_core.kernels.signals import divergence_signals_nb
from cryptota_core.kernels.sweep import balanced_order, divergence_sweep_nb
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
from cryptota_core.strategies.rsi import rsi_warmup


class RsiDivergenceParams(StrategyParams):
    """RSI ``period``; ``pivot_window`` bars each side of a pivot; ``max_gap`` bars at most
    between the two pivots compared."""

    period: int = Field(14, ge=2, le=1000, description="RSI look-back in bars")
    pivot_window: int = Field(5, ge=1, le=200, description="bars each side of a pivot")
    max_gap: int = Field(60, ge=2, le=5000, description="max bars between compared pivots")

    @model_validator(mode="after")
    def _gap_spans_pivots(self) -> Self:
        if self.max_gap <= self.pivot_window:
            raise ValueError(
                f"max_gap ({self.max_gap}) must exceed pivot_window ({self.pivot_window}): two "
                "pivots are always more than pivot_window bars apart"
            )
        return self


def divergence_warmup(params: RsiDivergenceParams) -> int:
    """First bar that can confirm a usable pivot (see the module docstring)."""
    w = params.pivot_window
    return max(rsi_warmup(params.period) + w, 2 * w)


class RsiDivergenceKernel(SignalKernel):
    """Pivot divergence signals on the RSI; the sweep shares one RSI row per period and finds
    each set's pivots inside the parallel kernel
    (:func:`~cryptota_core.kernels.sweep.divergence_sweep_nb`), so no signal rows are
    kept."""

    def signals(self, params: StrategyParams, prices: Prices) -> tuple[np.ndarray, np.ndarray]:
        assert isinstance(params, RsiDivergenceParams)
        rsi = rsi_nb(prices.close, int(params.period))
        return divergence_signals_nb(
            prices.low,
            prices.high,
            rsi,
            int(params.pivot_window),
            int(params.max_gap),
            int(divergence_warmup(params)),
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
        sets = [p for p in params if isinstance(p, RsiDivergenceParams)]
        keys = [(int(m.period),) for m in sets]
        rows = allocate_rows(len(params), edges.shape[0] - 1)
        for batch in batches(keys, max(1, TABLE_BYTES // (8 * close.shape[0]))):
            periods, rsi_row = distinct_rows([keys[i][0] for i in batch])
            got = divergence_sweep_nb(
                *prices,
                indicator_table(close, periods, rsi_table_nb),
                rsi_row,
                np.array([int(sets[i].pivot_window) for i in batch], dtype=np.int64),
                np.array([int(sets[i].max_gap) for i in batch], dtype=np.int64),
                warmups[batch],
                edges,
                *long_costs(broker),
                balanced_order(len(batch), numba.get_num_threads()),
            )
            store_rows(rows, batch, got)
        return rows


@register
class RsiDivergence(Strategy):
    """Bullish RSI divergence entries, bearish divergence exits (see the module docstring)."""

    name: ClassVar[str] = "rsi_divergence"
    params_model: ClassVar[type[StrategyParams]] = RsiDivergenceParams
    default_grid: ClassVar[dict[str, list[Any]]] = {
        "period": [9, 14],
        "pivot_window": [3, 5],
        "max_gap": [30, 60],
    }
    slug_abbrev: ClassVar[dict[str, str]] = {"period": "p", "pivot_window": "pw", "max_gap": "gap"}
    bt_class = "cryptota_core.strategies.bt.rsi_divergence:RsiDivergenceBt"
    kernel = RsiDivergenceKernel()
    description: ClassVar[str] = "long on bullish RSI divergence, exit on bearish divergence"

    def warmup(self, params: StrategyParams) -> int:
        assert isinstance(params, RsiDivergenceParams)
        return divergence_warmup(params)
