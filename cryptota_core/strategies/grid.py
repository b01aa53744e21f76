"""``grid``: a spot grid bot (long inventory only, never short).

Levels sit at ``reference × (1 + j × spacing_pct / 100)`` for ``j = -levels .. +levels``. On the
first bar after warm-up (warm-up is 0: the reference is the first close) and whenever a close
leaves the grid (above the top level or below the bottom one) the bot **(re-)centres** on that
close:

1. cancels every open grid order;
2. fixes the order size ``q = order_size × equity / close`` (base units, until the next
   re-centring);
3. brings its inventory to ``levels × q`` with one market order (fills at the next open), so that
   every sell order is backed by coins it holds, as Binance's spot grid does at start;
4. places a **BUY** limit of ``q`` at each of the ``levels`` levels **below** the reference and a
   **SELL** limit of ``q`` at each of the ``levels`` levels **above** it (level 0, the reference
   itself, starts empty).

When a buy at level ``j`` fills, a sell of the same size goes to level ``j + 1``; when a sell at
level ``j`` fills, a buy goes to level ``j - 1``. So every level holds at most one order and the
inventory always equals ``q`` times the number of open sells. (The old service placed a sell on
the buy side; ``test_grid_buy_side_places_buy_orders`` guards against that.) Limit orders fill
the way backtrader fills them: at the open when the open is already through the level, otherwise
at the level if the bar's range reaches it. A buy that cash cannot pay for at fill is rejected
and its level stays empty until the next re-centring.

The grid sizes its orders with ``order_size``; the engine's ``stake`` (the entry size of the
signal strategies) does not apply to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numba
import numpy as np
from pydantic import Field, model_validator

from cryptota_core.broker import BrokerSettings
from cryptota_core.kernels.grid import simulate_grid_nb
from cryptota_core.kernels.sweep import balanced_order, grid_sweep_nb
from cryptota_core.strategies.base import Strategy, StrategyParams
from cryptota_core.strategies.kernel import Prices, Simulation, StrategyKernel, SweepRows
from cryptota_core.strategies.registry import register


class GridParams(StrategyParams):
    """``levels`` per side, ``spacing_pct`` percent between levels, ``order_size`` fraction of
    equity per order."""

    levels: int = Field(5, ge=1, le=100, description="grid levels on each side")
    spacing_pct: float = Field(1.0, gt=0, le=50, description="percent between adjacent levels")
    order_size: float = Field(0.08, gt=0, le=0.5, description="fraction of equity per order")

    @model_validator(mode="after")
    def _fundable(self) -> Self:
        if self.levels * self.spacing_pct >= 100:
            raise ValueError(
                f"levels × spacing_pct ({self.levels} × {self.spacing_pct:g}) must stay below 100 "
                "so the lowest buy level is above zero"
            )
        if 2 * self.levels * self.order_size > 1:
            raise ValueError(
                f"2 × levels × order_size ({2 * self.levels * self.order_size:g}) must be at most "
                "1: the inventory for the sell side plus the buy side must fit in the equity"
            )
        return self


class GridKernel(StrategyKernel):
    """The order book in numba (:mod:`cryptota_core.kernels.grid`); the sweep runs
    one book per set in parallel. ``stake`` does not apply (orders are ``order_size``)."""

    def simulate(
        self, params: StrategyParams, prices: Prices, warmup: int, broker: BrokerSettings
    ) -> Simulation:
        assert isinstance(params, GridParams)
        equity, position, orders, fills, rejected = simulate_grid_nb(
            *prices,
            int(params.levels),
            float(params.spacing_pct),
            float(params.order_size),
            float(broker.cash),
            float(broker.commission),
            float(broker.slippage),
        )
        return Simulation(equity, position, orders, fills, int(rejected))

    def sweep(
        self,
        params: Sequence[StrategyParams],
        prices: Prices,
        warmups: np.ndarray,
        edges: np.ndarray,
        broker: BrokerSettings,
    ) -> SweepRows:
        sets = [p for p in params if isinstance(p, GridParams)]
        return SweepRows(
            *grid_sweep_nb(
                *prices,
                np.array([int(m.levels) for m in sets], dtype=np.int64),
                np.array([float(m.spacing_pct) for m in sets]),
                np.array([float(m.order_size) for m in sets]),
                edges,
                float(broker.cash),
                float(broker.commission),
                float(broker.slippage),
                balanced_order(len(sets), numba.get_num_threads()),
            )
        )


@register
class Grid(Strategy):
    """Spot grid bot (see the module docstring)."""

    name: ClassVar[str] = "grid"
    params_model: ClassVar[type[StrategyParams]] = GridParams
    default_grid: ClassVar[dict[str, list[Any]]] = {
        "levels": [3, 5],
        "spacing_pct": [0.5, 1.0, 2.0],
        "order_size": [0.05, 0.1],
    }
    slug_abbrev: ClassVar[dict[str, str]] = {"levels": "l", "spacing_pct": "s", "order_size": "q"}
    bt_class = "cryptota_core.strategies.bt.grid:GridBt"
    kernel = GridKernel()
    description: ClassVar[str] = "spot grid bot: buy limits below, sell limits above, re-centred"

    def warmup(self, params: StrategyParams) -> int:
        return 0
