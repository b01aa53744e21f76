"""Trading strategies: typed parameter specs plus their backtrader implementations.

Importing this package registers the built-in strategies (``rsi``, ``rsi_ma``,
``rsi_divergence``, ``grid``); look them up with :func:`get_strategy`. To add your own, see
``docs/custom-strategy.md``.
"""

from __future__ import annotations

from cryptota_core.strategies import grid, rsi, rsi_divergence, rsi_ma
from cryptota_core.strategies.base import (
    BaseBtStrategy,
    Fill,
    LongOnlyStrategy,
    LongShortStrategy,
    OrderRecord,
    Strategy,
    StrategyParams,
)
from cryptota_core.strategies.registry import (
    ENTRY_POINT_GROUP,
    get_strategy,
    register,
    strategy_names,
    unregister,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "BaseBtStrategy",
    "Fill",
    "LongOnlyStrategy",
    "LongShortStrategy",
    "OrderRecord",
    "Strategy",
    "StrategyParams",
    "get_strategy",
    "grid",
    "register",
    "rsi",
    "rsi_divergence",
    "rsi_ma",
    "strategy_names",
    "unregister",
]
