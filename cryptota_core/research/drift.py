"""Performance drift: do the current best parameters still earn what walk-forward promised?

The expectation is the walk-forward's out-of-sample Sharpe ratios of the same strategy and
series — what the strategy delivered on data it was not fitted to, window after window. The
current best parameters are backtested over the last ``days`` of candles; they have *drifted*
when their Sharpe ratio there falls more than ``sigmas`` standard deviations (of the
per-window out-of-sample Sharpe ratios) below the mean. With a single window there is no spread
to measure, so the expectation's own size stands in for it: drift is falling ``sigmas × |mean|``
below the mean (for a positive expectation and one sigma: below zero). A run with no trade has
no Sharpe ratio and counts as 0 (it earned nothing). The check re-optimises; it never trades.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptota_core.backtest.fast import run_fast_backtest
from cryptota_core.errors import InvalidInputError
from cryptota_core.numbers import finite_or_none


@dataclass(frozen=True)
class DriftCheck:
    """The verdict of one drift check, and the numbers behind it."""

    strategy: str
    slug: str
    realised_sharpe: float
    expected_sharpe: float
    expected_spread: float
    threshold: float
    drifted: bool

    def explain(self) -> str:
        verdict = "drifted" if self.drifted else "holds"
        return (
            f"{self.slug} {verdict}: Sharpe {self.realised_sharpe:.3f} over the recent window "
            f"against a walk-forward expectation of {self.expected_sharpe:.3f} "
            f"± {self.expected_spread:.3f} (threshold {self.threshold:.3f})"
        )


def check_drift(
    recent: pd.DataFrame,
    *,
    strategy: str,
    params: Mapping[str, Any],
    interval: str,
    out_of_sample_sharpes: Sequence[float | None],
    sigmas: float = 1.0,
) -> DriftCheck:
    """Judge ``params`` on the ``recent`` candles against the walk-forward's
    ``out_of_sample_sharpes`` (annualised, one per window; None where undefined)."""
    expected = np.array([s for s in out_of_sample_sharpes if s is not None and math.isfinite(s)])
    if expected.size == 0:
        raise InvalidInputError(
            f"no walk-forward out-of-sample Sharpe ratio for {strategy}: materialise "
            "walk_forward_report (or run `cryptota walk-forward`) first"
        )
    run = run_fast_backtest(recent, strategy, dict(params), interval=interval)
    realised = finite_or_none(run.metrics.get("sharpe_ratio")) or 0.0
    mean = float(expected.mean())
    spread = float(expected.std(ddof=1)) if expected.size > 1 else abs(mean)
    threshold = mean - sigmas * spread
    return DriftCheck(
        strategy=run.strategy,
        slug=run.slug,
        realised_sharpe=realised,
        expected_sharpe=mean,
        expected_spread=spread,
        threshold=threshold,
        drifted=realised < threshold,
    )
