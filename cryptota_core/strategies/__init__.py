"""Trading strategies: typed parameter specs plus their backtrader implementations.

Importing this package registers the built-in strategies (``rsi``, ``rsi_ma``,
``rsi_divergence``, ``grid``); look them up with :func:`get_strategy`. To add your own, see
``docs/custom-strategy.md``. The backtrader bases (``LongOnlyStrategy`` and the others) are
exported too, but imported only when first used: backtrader is a fifth of a second that a
sweep or a fast-engine run never needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cryptota_core.strategies import grid, rsi, rsi_divergence, rsi_ma
from cryptota_core.strategies.base import (
    Fill,
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

if TYPE_CHECKING:
    from cryptota_core.strategies.bt.base import (
        BaseBtStrategy,
        LongOnlyStrategy,
        LongShortStrategy,
    )

_BACKTRADER_BASES = ("BaseBtStrategy", "LongOnlyStrategy", "LongShortStrategy")


def __getattr__(name: str) -> Any:
    """The backtrader bases, imported on first use (PEP 562)."""
    if name in _BACKTRADER_BASES:
        return getattr(importlib.import_module("cryptota_core.strategies.bt.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
