"""What the pipeline backtests: the configured window and the parameter sets of the strategy
grids. Pure: running them and storing the results is :mod:`cryptota_core.app.backtests`'s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cryptota_core.strategies import get_strategy


@dataclass(frozen=True)
class BacktestWindow:
    """The candles every pipeline backtest runs on: ``[start, end)`` at ``interval``."""

    interval: str
    start: pd.Timestamp
    end: pd.Timestamp


@dataclass(frozen=True)
class ParamSet:
    """One registered strategy configuration, known by its URL-safe slug."""

    slug: str
    strategy: str
    params: dict[str, Any]


def backtest_window(interval: str, days: int, today: pd.Timestamp | None = None) -> BacktestWindow:
    """The last ``days`` full UTC days before ``today`` (default: now) at ``interval``
    (CRYPTOTA_BACKTEST_INTERVAL, CRYPTOTA_BACKTEST_DAYS)."""
    end = (today if today is not None else pd.Timestamp.now(tz="UTC")).tz_convert("UTC").floor("D")
    return BacktestWindow(interval, end - pd.Timedelta(days=days), end)


def expand_param_grids(grids: Mapping[str, Mapping[str, Any]]) -> list[ParamSet]:
    """Every valid combination of every strategy's grid, as parameter sets (invalid combinations
    such as ``oversold >= overbought`` are skipped; unknown strategies or keys raise)."""
    sets: dict[str, ParamSet] = {}
    for name, grid in grids.items():
        spec = get_strategy(name)
        for params in spec.expand_grid(dict(grid)):
            slug = spec.slug(params)
            sets[slug] = ParamSet(slug, spec.name, params.model_dump())
    return list(sets.values())
