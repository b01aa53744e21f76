"""How the pipeline researches: the one declaration of the research settings.

Every field is declared here once, with its default, bounds and description. The Dagster
resource (``ResearchConfigResource`` in :mod:`cryptota_pipelines.resources`) inherits these
fields, so its config keys, defaults and checks are these; :meth:`ResearchConfig.from_settings`
is the one mapping from the ``CRYPTOTA_OPTIMIZATION_*`` / ``WALK_FORWARD_*`` / ``DRIFT_*``
environment (:class:`~cryptota_core.settings.Settings`) to them.
"""

from __future__ import annotations

from typing import Any, Literal, Self

import pandas as pd
from pydantic import BaseModel, Field

from cryptota_core.backtest.runs import BacktestWindow, backtest_window
from cryptota_core.research.optimize import (
    DEFAULT_MIN_TRADES,
    DEFAULT_RECHECK,
    DEFAULT_SIGNIFICANCE_PERIOD,
    OptimizeSettings,
)
from cryptota_core.research.search import DEFAULT_MAX_SETS, SearchSpec
from cryptota_core.settings import Settings


class ResearchConfig(BaseModel):
    """How the pipeline optimises, walks forward and checks drift (CRYPTOTA_OPTIMIZATION_*,
    CRYPTOTA_WALK_FORWARD_*, CRYPTOTA_DRIFT_*), on the backtests' candle interval."""

    interval: str = Field(default="1h", description="Candle interval (CRYPTOTA_BACKTEST_INTERVAL).")
    grids: dict[str, dict[str, list[Any]]] = Field(
        default_factory=dict, description="Grid per strategy (CRYPTOTA_OPTIMIZATION_GRIDS)."
    )
    objective: str = Field(default="sharpe", description="What optimisation ranks by.")
    optimization_days: int = Field(default=90, gt=0, description="Optimisation window, days.")
    top: int = Field(default=10, gt=0, description="Best sets an optimisation keeps.")
    recheck: int = Field(
        default=DEFAULT_RECHECK,
        ge=0,
        description="Best sets re-run set by set to check the sweep "
        "(CRYPTOTA_OPTIMIZATION_RECHECK).",
    )
    recheck_engine: Literal["fast", "backtrader"] = Field(
        default="fast",
        description="Engine of the re-check (CRYPTOTA_OPTIMIZATION_RECHECK_ENGINE).",
    )
    min_trades: int = Field(
        default=DEFAULT_MIN_TRADES,
        ge=0,
        description="Sets with fewer closed trades are not candidates "
        "(CRYPTOTA_OPTIMIZATION_MIN_TRADES).",
    )
    significance_period: str = Field(
        default=DEFAULT_SIGNIFICANCE_PERIOD,
        description="Period PSR, DSR and PBO aggregate returns to "
        "(CRYPTOTA_OPTIMIZATION_SIGNIFICANCE_PERIOD).",
    )
    walk_forward_days: int = Field(default=180, gt=0, description="Walk-forward window, days.")
    windows: int = Field(default=5, gt=0, description="Walk-forward out-of-sample windows.")
    in_sample_ratio: float = Field(default=3.0, gt=0, description="In-sample / OOS length.")
    anchored: bool = Field(default=False, description="Anchored in-sample windows.")
    drift_days: int = Field(default=7, gt=0, description="Recent days judged for drift.")
    drift_sigmas: float = Field(default=1.0, gt=0, description="Drift threshold in std devs.")
    max_sets: int = Field(
        default=DEFAULT_MAX_SETS, gt=0, description="Refuse a search of more sets than this."
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The configuration the settings (the environment) give: the one place a research
        setting's ``CRYPTOTA_*`` name meets its config key. Called on the Dagster resource, it
        builds the resource."""
        return cls(
            **{
                "interval": settings.backtest_interval,
                "grids": settings.optimization_grids,
                "objective": settings.optimization_objective,
                "optimization_days": settings.optimization_days,
                "top": settings.optimization_top,
                "recheck": settings.optimization_recheck,
                "recheck_engine": settings.optimization_recheck_engine,
                "min_trades": settings.optimization_min_trades,
                "significance_period": settings.optimization_significance_period,
                "walk_forward_days": settings.walk_forward_days,
                "windows": settings.walk_forward_windows,
                "in_sample_ratio": settings.walk_forward_in_sample_ratio,
                "anchored": settings.walk_forward_anchored,
                "drift_days": settings.drift_days,
                "drift_sigmas": settings.drift_sigmas,
            }
        )

    def optimize_settings(self) -> OptimizeSettings:
        """The candidates' minimum trades and the significance period, validated."""
        return OptimizeSettings(
            min_trades=self.min_trades, significance_period=self.significance_period
        )

    def searches(self) -> list[SearchSpec]:
        """One grid search per configured strategy."""
        return [
            SearchSpec(
                strategy=name, grid={k: list(v) for k, v in grid.items()}, max_sets=self.max_sets
            )
            for name, grid in self.grids.items()
        ]

    def optimization_window(self, today: pd.Timestamp | None = None) -> BacktestWindow:
        return backtest_window(self.interval, self.optimization_days, today)

    def walk_forward_window(self, today: pd.Timestamp | None = None) -> BacktestWindow:
        return backtest_window(self.interval, self.walk_forward_days, today)
