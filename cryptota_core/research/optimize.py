"""Parameter optimisation: sweep a grid, rank by an objective, re-check the best on backtrader,
and say how much of the winner is luck.

The flow (DESIGN §4 ``parameter_optimization``):

1. :func:`~cryptota_core.research.search.parameter_sets` turns the grid (or a random draw from
   it) into typed parameter sets, refusing a search larger than ``max_sets`` before expanding it.
2. :func:`~cryptota_core.backtest.sweep.run_sweep` evaluates every set in one call and ranks them
   by the objective (sharpe, sortino, calmar, total_return, sqn, ...).
3. The top ``top`` sets are re-run on the fast engine for their full 45 metrics, and the first
   ``recheck`` of them on backtrader, the reference engine: a re-check *reproduces* the sweep
   when the exact figures are equal bit for bit and the streamed ratios agree to
   :func:`~cryptota_core.backtest.sweep.figure_tolerance`.
4. The winner's probabilistic and deflated Sharpe ratio (given every trial's Sharpe ratio) and the
   probability of backtest overfitting (CSCV on the sweep's per-block return sums) say whether
   the winner's edge survives the search that found it (:mod:`.statistics`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.fast import run_fast_backtest
from cryptota_core.backtest.result import BacktestResult, iso_utc
from cryptota_core.backtest.sweep import (
    EXACT_FIGURES,
    FIGURES,
    OBJECTIVES,
    SweepResult,
    figure_tolerance,
    run_sweep,
)

# BrokerSettings: the settings every set of a search runs with, validated by the backtests' own
# model (and importable from here, where research code has always imported it).
from cryptota_core.broker import BrokerSettings
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.intervals import periods_per_year
from cryptota_core.numbers import finite_or_none
from cryptota_core.research.search import SearchSpec, parameter_sets
from cryptota_core.research.statistics import (
    DEFAULT_BLOCKS,
    deflated_sharpe_ratio,
    pbo_from_blocks,
    psr_from_returns,
)
from cryptota_core.strategies import Strategy, StrategyParams, get_strategy

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: what a long optimisation reports (the CLI draws a bar)."""


@dataclass(frozen=True)
class Recheck:
    """One top set re-run on backtrader and compared with the sweep's figures."""

    slug: str
    reproduced: bool
    differences: dict[str, float]
    """|backtrader − sweep| per figure that differs at all (empty when bit-identical)."""


@dataclass(frozen=True)
class OptimizationResult:
    """A finished search over one candle series."""

    strategy: str
    interval: str
    objective: str
    """The figure ranked by (a column of :data:`~cryptota_core.backtest.sweep.FIGURES`)."""
    spec: SearchSpec
    sweep: SweepResult
    top: pd.DataFrame
    """The best sets, best first: ``rank``, ``slug``, ``params`` and the sweep figures."""
    best: BacktestResult
    """The winner's full run: on backtrader when re-checked, else on the fast engine."""
    rechecks: list[Recheck]
    statistics: dict[str, Any]
    broker: BrokerSettings = field(default_factory=BrokerSettings)

    @property
    def best_slug(self) -> str:
        return str(self.top["slug"].iloc[0])

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.top["params"].iloc[0])

    @property
    def best_score(self) -> float | None:
        return finite_or_none(self.top[self.objective].iloc[0])

    @property
    def combinations(self) -> int:
        return len(self.sweep.slugs)

    def heatmap_frame(self, x: str | None = None, y: str | None = None) -> pd.DataFrame:
        """The objective over two parameters (rows ``y``, columns ``x``), the best value over
        the other parameters; by default the first two parameters the grid varies."""
        x, y = heatmap_axes(self.spec.grid, x, y)
        values = pd.DataFrame([p.model_dump() for p in self.sweep.params])
        values["score"] = self.sweep.figures[self.objective].to_numpy()
        return values.pivot_table(index=y, columns=x, values="score", aggfunc="max")

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: the ``cryptota optimize --json`` object."""
        return {
            "strategy": self.strategy,
            "interval": self.interval,
            "objective": self.objective,
            "method": self.spec.method,
            "grid": self.spec.grid,
            "combinations": self.combinations,
            "bars": self.sweep.bars,
            "start": iso_utc(self.sweep.candle_start),
            "end": iso_utc(self.sweep.candle_end),
            "best": {
                "slug": self.best_slug,
                "params": self.best_params,
                "score": self.best_score,
                "engine": self.best.engine,
                "metrics": self.best.headline(),
            },
            "top": top_records(self.top),
            "sweep_engine": self.sweep.engine,
            "rechecks": [
                {"slug": r.slug, "reproduced": r.reproduced, "differences": r.differences}
                for r in self.rechecks
            ],
            "statistics": self.statistics,
        }


def top_records(top: pd.DataFrame) -> list[dict[str, Any]]:
    """The top table as JSON records (undefined numbers as null)."""
    return [
        {
            str(key): (finite_or_none(value) if isinstance(value, float) else value)
            for key, value in row.items()
        }
        for row in top.to_dict(orient="records")
    ]


def heatmap_axes(
    grid: Mapping[str, Sequence[Any]], x: str | None = None, y: str | None = None
) -> tuple[str, str]:
    """The two parameters a heatmap shows: as asked, else the first two the grid varies (or
    its first two keys)."""
    keys = list(grid)
    varied = [k for k in keys if len(grid[k]) > 1] + [k for k in keys if len(grid[k]) <= 1]
    for name in (x, y):
        if name is not None and name not in keys:
            raise InvalidInputError(f"cannot draw {name!r}: the grid's parameters are {keys}")
    if len(keys) < 2 and (x is None or y is None):
        raise InvalidInputError("a heatmap needs a grid of at least two parameters")
    x = x or next(k for k in varied if k != y)
    y = y or next(k for k in varied if k != x)
    if x == y:
        raise InvalidInputError(f"a heatmap needs two different parameters, got {x!r} twice")
    return x, y


def optimize(
    candles: pd.DataFrame,
    spec: SearchSpec,
    *,
    interval: str,
    objective: str = "sharpe",
    top: int = 10,
    recheck: int | None = None,
    broker: BrokerSettings | None = None,
    n_blocks: int = DEFAULT_BLOCKS,
    progress: Progress | None = None,
    sets: Sequence[StrategyParams] | None = None,
) -> OptimizationResult:
    """Search ``spec`` over ``candles`` (see the module docstring). ``recheck`` (default: all
    of ``top``) is how many of the top sets re-run on backtrader; ``sets``, the parameter sets
    of ``spec`` when the caller expanded them already (to fail on a bad grid before reading
    candles)."""
    broker = broker or BrokerSettings()
    column = objective_column(objective)
    if top < 1:
        raise InvalidInputError(f"--top {top}: ask for at least 1 parameter set")
    recheck = top if recheck is None else recheck
    if recheck < 0:
        raise InvalidInputError(f"--recheck {recheck}: use 0 or more")
    strategy = get_strategy(spec.strategy)
    report = progress or (lambda _stage, _done, _total: None)
    report("sweep", 0, 1)
    sweep, ranked = sweep_ranked(
        candles,
        strategy,
        list(sets) if sets is not None else parameter_sets(spec),
        interval=interval,
        objective=column,
        top=top,
        broker=broker,
        n_blocks=n_blocks,
    )
    report("sweep", 1, 1)
    table = top_table(sweep, ranked, column)
    by_slug = dict(zip(sweep.slugs, sweep.params, strict=True))

    checks: list[Recheck] = []
    best: BacktestResult | None = None
    # Re-running a set on the engine that swept it proves nothing: a strategy without a sweep
    # kernel was swept on backtrader, so its winner is only run in full, not "re-checked".
    independent = sweep.engine != "backtrader"
    todo = min(recheck, len(ranked)) if independent else 0
    for k, slug in enumerate(ranked[:todo]):
        report("backtrader re-check", k, todo)
        run = run_backtest(candles, strategy, by_slug[slug], interval=interval, **broker.kwargs())
        checks.append(compare(sweep, slug, run))
        best = best or run
    report("backtrader re-check", todo, todo)
    if best is None:
        full_run = run_fast_backtest if independent else run_backtest
        best = full_run(candles, strategy, by_slug[ranked[0]], interval=interval, **broker.kwargs())
    if checks and not checks[0].reproduced:
        log.warning("backtrader did not reproduce the sweep's winner %s: %s", ranked[0], checks[0])
    statistics = overfitting_statistics(sweep, best)
    return OptimizationResult(
        strategy=strategy.name,
        interval=sweep.interval,
        objective=column,
        spec=spec,
        sweep=sweep,
        top=table,
        best=best,
        rechecks=checks,
        statistics=statistics,
        broker=broker,
    )


def sweep_ranked(
    candles: pd.DataFrame,
    strategy: Strategy,
    sets: list[StrategyParams],
    *,
    interval: str,
    objective: str,
    top: int,
    broker: BrokerSettings,
    n_blocks: int = DEFAULT_BLOCKS,
) -> tuple[SweepResult, list[str]]:
    """One sweep of the ``sets`` that fit the candles, and the ``top`` slugs by ``objective``
    (a figure column), best first: the search of an optimisation and of each walk-forward
    window."""
    sets = fitting_sets(strategy, sets, len(candles))
    sweep = run_sweep(
        candles,
        strategy,
        sets,
        interval=interval,
        n_blocks=blocks_for(len(candles), n_blocks),
        **broker.kwargs(),
    )
    return sweep, sweep.rank(objective, top=min(top, len(sets)))


def fitting_sets(strategy: Strategy, sets: list[StrategyParams], bars: int) -> list[StrategyParams]:
    """The sets whose warm-up leaves a signal bar and a fill bar in ``bars`` candles. The others
    cannot trade here (a 50-bar moving average on 48 candles); they are left out of the search,
    said once in the log, rather than failing it — unless none is left."""
    fitting = [params for params in sets if strategy.warmup(params) + 2 <= bars]
    if not fitting:
        longest = min(strategy.warmup(params) for params in sets) + 2
        raise InvalidInputError(
            f"{bars} candles are too few for every set of the {strategy.name} grid (the shortest "
            f"warm-up needs {longest}); load a longer window or use shorter periods"
        )
    if len(fitting) < len(sets):
        log.warning(
            "%d of %d %s sets need more than %d candles of warm-up; searched the other %d",
            len(sets) - len(fitting),
            len(sets),
            strategy.name,
            bars,
            len(fitting),
        )
    return fitting


def objective_column(objective: str) -> str:
    """The sweep figure an objective name (``sharpe``, ``sortino_ratio``, ...) ranks by."""
    column = OBJECTIVES.get(objective)
    if column is None:
        raise InvalidInputError(
            f"unknown objective {objective!r}; use one of {', '.join(sorted(set(OBJECTIVES)))}"
        )
    return column


MIN_BLOCK_RETURNS = 50
"""Fewest returns a CSCV block may hold: fewer give no usable Sharpe ratio per block."""


def blocks_for(bars: int, wanted: int = DEFAULT_BLOCKS) -> int:
    """CSCV blocks for ``bars`` candles: ``wanted`` (16) when every block gets at least
    :data:`MIN_BLOCK_RETURNS` returns, else the largest even number that does, at least 2."""
    fitting = max(2, (bars - 1) // MIN_BLOCK_RETURNS)
    blocks = min(wanted, fitting)
    return max(2, blocks - blocks % 2)


def top_table(sweep: SweepResult, ranked: Sequence[str], objective: str) -> pd.DataFrame:
    """The ranked sets with their parameters and sweep figures, best first."""
    by_slug = dict(zip(sweep.slugs, sweep.params, strict=True))
    rows = sweep.figures.loc[list(ranked)].reset_index()
    rows.insert(0, "rank", np.arange(1, len(rows) + 1))
    rows.insert(2, "params", [by_slug[s].model_dump(mode="json") for s in ranked])
    ordered = ["rank", "slug", "params", objective, *[f for f in FIGURES if f != objective]]
    return rows[ordered]


def compare(sweep: SweepResult, slug: str, run: BacktestResult) -> Recheck:
    """How a full run of ``slug`` agrees with the sweep: every exact figure equal bit for bit,
    the streamed ratios within :func:`figure_tolerance`."""
    periods = periods_per_year(sweep.interval)
    figures = sweep.figures.loc[slug].to_numpy(dtype=np.float64)
    differences: dict[str, float] = {}
    reproduced = True
    for name, value in zip(FIGURES, figures, strict=True):
        expected = finite_or_none(run.metrics.get(name))
        got = finite_or_none(value)
        if expected is None or got is None:
            if (expected is None) != (got is None):
                reproduced = False
                differences[name] = math.inf
            continue
        diff = abs(expected - got)
        if diff:
            differences[name] = diff
        limit = 0.0 if name in EXACT_FIGURES else figure_tolerance(name, expected, periods)
        reproduced &= diff <= limit
    return Recheck(slug=slug, reproduced=reproduced, differences=differences)


def overfitting_statistics(sweep: SweepResult, best: BacktestResult) -> dict[str, Any]:
    """PSR and DSR of the winner and PBO of the search, as JSON-ready numbers (null where
    undefined). Sharpe ratios are per bar inside the statistics and annualised where named
    ``..._annualised``."""
    periods = periods_per_year(sweep.interval)
    root = math.sqrt(periods)
    trial_sharpes = sweep.figures["sharpe_ratio"].to_numpy(dtype=np.float64) / root
    returns = best.equity.pct_change().to_numpy()[1:]
    deflated = deflated_sharpe_ratio(returns, trial_sharpes)
    out: dict[str, Any] = {
        "n_trials": deflated.n_trials,
        "sharpe_variance": finite_or_none(deflated.sharpe_variance),
        "winner_sharpe_annualised": finite_or_none(deflated.sharpe * root),
        "expected_max_sharpe_annualised": finite_or_none(deflated.expected_max_sharpe * root),
        "psr": finite_or_none(psr_from_returns(returns)),
        "dsr": finite_or_none(deflated.dsr),
        "dsr_significant": bool(deflated.significant),
        "pbo": None,
        "pbo_blocks": int(sweep.block_sum.shape[1]),
        "pbo_combinations": None,
        "probability_of_loss": None,
        "performance_degradation_slope": None,
    }
    if len(sweep.slugs) >= 2:
        pbo = pbo_from_blocks(sweep.block_sum, sweep.block_sumsq, sweep.block_count)
        out.update(
            pbo=finite_or_none(pbo.pbo),
            pbo_combinations=pbo.n_combinations,
            probability_of_loss=finite_or_none(pbo.probability_of_loss),
            performance_degradation_slope=finite_or_none(pbo.degradation_slope),
        )
    return out


def optimization_key(
    *,
    exchange: str,
    symbol: str,
    interval: str,
    spec: SearchSpec,
    objective: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> str:
    """The deterministic key of one search over one series and window: searching again
    replaces the stored one."""
    identity = [
        exchange,
        symbol,
        interval,
        spec.strategy,
        spec.model_dump(mode="json", exclude={"max_sets"}),
        objective,
        iso_utc(start),
        iso_utc(end),
    ]
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
