"""Parameter optimisation: sweep a grid, rank by an objective, re-check the best on backtrader,
and say how much of the winner is luck.

The flow (DESIGN §4 ``parameter_optimization``):

1. :func:`~cryptota_core.research.search.parameter_sets` turns the grid (or a random draw from
   it) into typed parameter sets, refusing a search larger than ``max_sets`` before expanding it.
2. :func:`~cryptota_core.backtest.sweep.run_sweep` evaluates every set in one call and ranks them
   by the objective (sharpe, sortino, calmar, total_return, sqn, ...).
3. The first ``recheck`` of the top sets (default: the winner) are re-run set by set on the
   ``recheck_engine``: the fast engine by default (an independent simulation — orders, fills
   and a full equity curve — whose winner run is needed for its 45 metrics anyway), or
   backtrader, the reference engine (~30 s per set on a year of 1m). A re-check *reproduces*
   the sweep when the exact figures are equal bit for bit and the streamed ratios agree to
   :func:`~cryptota_core.backtest.sweep.figure_tolerance`. The default keeps the check's cost
   proportional to the sweep's: one set-by-set run beside a sweep of the whole grid.
   Only sets with at least ``min_trades`` closed trades take part in the ranking and in the
   statistics (:class:`OptimizeSettings`).
4. The winner's probabilistic and deflated Sharpe ratio (given every trial's Sharpe ratio) and the
   probability of backtest overfitting (CSCV) say whether the winner's edge survives the search
   that found it (:mod:`.statistics`). All three are computed on returns **aggregated to a
   significance period** (a day by default): the sweep's blocks are periods of
   ``bars_per_period`` bars, and a period's return is the sum of its per-bar simple returns.
   Per-bar returns at 1m are mostly zero and not independent, so they are not the i.i.d.
   observations the Sharpe ratio's standard error assumes; a day's sum is much closer to one.
   Aggregation does not make a *selected* winner's PSR small on noise — selection does that,
   and the DSR corrects for it (docs/research.md, "Significance").
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cryptota_core.backtest.engines import ENGINES, engine_runner
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
from cryptota_core.market.intervals import (
    MS_PER_YEAR,
    SIGNIFICANCE_PERIOD_MS,
    interval_ms,
    periods_per_year,
)
from cryptota_core.numbers import finite_or_none
from cryptota_core.research.search import SearchSpec, parameter_sets
from cryptota_core.research.statistics import (
    DEFAULT_BLOCKS,
    PBO_ABSOLUTE_TOLERANCE,
    PBO_RELATIVE_TOLERANCE,
    SIGNIFICANCE,
    ZERO_DISPERSION,
    blocks_from_returns,
    deflated_sharpe_ratio,
    effective_observations,
    haircut_sharpe_ratio,
    minimum_track_record_length,
    null_sharpe_variance,
    pbo_by_convention,
    probabilistic_sharpe_ratio,
)
from cryptota_core.strategies import Strategy, StrategyParams, get_strategy

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: what a long optimisation reports (the CLI draws a bar)."""


DEFAULT_SIGNIFICANCE_PERIOD = "1d"
"""Statistics count daily returns by default: a day is the horizon at which the literature's
Sharpe ratio tests are usually read, long enough that 1m strategy returns summed over it are
close to independent, and a 90-day optimisation window still gives 90 observations."""

DEFAULT_MIN_TRADES = 5
"""Sets with fewer closed trades are not candidates by default. Below about five round trips the
Sharpe ratio of a set is the market's move over one or two holding periods, not the rule's: on
1m candles the Sharpe objective otherwise picks sets with one or two trades (issue 14). Five
keeps every set that trades at least weekly on the default 90-day window."""

RECHECK_ENGINES = ENGINES
"""The engines a re-check can run on: both engines' set-by-set simulations are independent of
the sweep kernel."""

DEFAULT_RECHECK = 1
"""Sets re-checked by default: the winner, whose full run the result carries anyway."""

MAX_PERIOD_CELLS = 16_000_000
"""Most sets × significance periods one optimisation keeps (three float64 arrays: ~400 MB)."""


class OptimizeSettings(BaseModel):
    """Which sets may win a search and the period its significance statistics count. Crosses the
    CLI and Dagster config boundary, hence pydantic; a bad value raises
    :class:`InvalidInputError` in one line, before any candle is read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_trades: int = Field(
        DEFAULT_MIN_TRADES,
        ge=0,
        description="Sets with fewer closed trades are dropped before ranking and before the "
        "statistics count their trials.",
    )
    significance_period: str = Field(
        DEFAULT_SIGNIFICANCE_PERIOD,
        description="Period PSR, DSR and PBO aggregate returns to: "
        + ", ".join(SIGNIFICANCE_PERIOD_MS)
        + "; candles coarser than it are used as they are.",
    )

    @field_validator("significance_period")
    @classmethod
    def _known_period(cls, value: str) -> str:
        if value not in SIGNIFICANCE_PERIOD_MS:
            raise ValueError(f"use one of {', '.join(SIGNIFICANCE_PERIOD_MS)}")
        return value

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            first = e.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "setting"
            flag = name.replace("_", "-")
            reason = str(first["msg"]).removeprefix("Value error, ")
            raise InvalidInputError(f"invalid --{flag} {first.get('input')!r}: {reason}") from None

    def bars_per_period(self, interval: str) -> float:
        """Candles of ``interval`` per significance period; 1 when a candle is as long as the
        period or longer (its candles are used as they are)."""
        return max(1.0, SIGNIFICANCE_PERIOD_MS[self.significance_period] / interval_ms(interval))

    def periods(self, bars: int, interval: str) -> int:
        """How many significance periods ``bars`` candles give: their ``bars − 1`` returns in
        blocks of as near ``bars_per_period`` as equal blocks allow, at least 1."""
        return max(1, min(bars - 1, round((bars - 1) / self.bars_per_period(interval))))


class NoCandidateError(InvalidInputError):
    """No set of a search made the minimum of trades: nothing may win it. A pipeline that
    searches several strategies skips that one (and says so) instead of failing the rest."""


@dataclass(frozen=True)
class Recheck:
    """One top set re-run set by set on an engine and compared with the sweep's figures."""

    slug: str
    reproduced: bool
    differences: dict[str, float]
    """|engine − sweep| per figure that differs at all (empty when bit-identical)."""
    engine: str = "backtrader"
    """The engine that re-ran the set (:data:`RECHECK_ENGINES`)."""


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
    """The winner's full run: on the re-check engine when re-checked, else on the fast one."""
    rechecks: list[Recheck]
    statistics: dict[str, Any]
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    settings: OptimizeSettings = field(default_factory=OptimizeSettings)

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
        the other parameters among the sets that competed (at least ``min_trades`` trades: a
        set that could not win is not drawn as if it could); by default the first two
        parameters the grid varies."""
        x, y = heatmap_axes(self.spec.grid, x, y)
        values = pd.DataFrame([p.model_dump() for p in self.sweep.params])
        trades = self.sweep.figures["trade_count"].to_numpy(dtype=np.float64)
        score = self.sweep.figures[self.objective].to_numpy(dtype=np.float64)
        values["score"] = np.where(trades >= self.settings.min_trades, score, np.nan)
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
                {
                    "slug": r.slug,
                    "engine": r.engine,
                    "reproduced": r.reproduced,
                    "differences": r.differences,
                }
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
    recheck: int = DEFAULT_RECHECK,
    recheck_engine: str = "fast",
    broker: BrokerSettings | None = None,
    n_blocks: int = DEFAULT_BLOCKS,
    progress: Progress | None = None,
    sets: Sequence[StrategyParams] | None = None,
    settings: OptimizeSettings | None = None,
) -> OptimizationResult:
    """Search ``spec`` over ``candles`` (see the module docstring). ``recheck`` (default: the
    winner) is how many of the top sets re-run set by set on ``recheck_engine`` (``fast`` or
    ``backtrader``); ``sets``, the parameter sets
    of ``spec`` when the caller expanded them already (to fail on a bad grid before reading
    candles); ``settings``, the minimum trades of a candidate and the significance period
    (:class:`OptimizeSettings`); ``n_blocks``, the CSCV blocks PBO wants (fewer on a short
    window: :func:`blocks_for`)."""
    broker = broker or BrokerSettings()
    settings = settings or OptimizeSettings()
    column = objective_column(objective)
    if top < 1:
        raise InvalidInputError(f"--top {top}: ask for at least 1 parameter set")
    check_recheck(recheck, recheck_engine)
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
        periods=settings.periods(len(candles), interval),
        min_trades=settings.min_trades,
    )
    report("sweep", 1, 1)
    table = top_table(sweep, ranked, column)
    by_slug = dict(zip(sweep.slugs, sweep.params, strict=True))

    checks: list[Recheck] = []
    best: BacktestResult | None = None
    # Re-running a set on the engine that swept it proves nothing: a strategy without a sweep
    # kernel was swept on backtrader (and has no fast kernel), so its winner is only run in
    # full, not "re-checked".
    independent = sweep.engine != "backtrader"
    todo = min(recheck, len(ranked)) if independent else 0
    engine_run = engine_runner(recheck_engine)
    stage = f"{recheck_engine} re-check"
    for k, slug in enumerate(ranked[:todo]):
        report(stage, k, todo)
        run = engine_run(candles, strategy, by_slug[slug], interval=interval, **broker.kwargs())
        checks.append(compare(sweep, slug, run, engine=recheck_engine))
        best = best or run
    report(stage, todo, todo)
    if best is None:
        full_run = engine_runner(sweep.engine)
        best = full_run(candles, strategy, by_slug[ranked[0]], interval=interval, **broker.kwargs())
    if checks and not checks[0].reproduced:
        log.warning(
            "the %s engine did not reproduce the sweep's winner %s: %s",
            recheck_engine,
            ranked[0],
            checks[0],
        )
    statistics = overfitting_statistics(sweep, ranked[0], settings=settings, n_blocks=n_blocks)
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
        settings=settings,
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
    periods: int | None = None,
    min_trades: int = 0,
) -> tuple[SweepResult, list[str]]:
    """One sweep of the ``sets`` that fit the candles, and the ``top`` slugs by ``objective``
    (a figure column) among the sets with at least ``min_trades`` closed trades, best first:
    the search of an optimisation and of each walk-forward window.

    The sweep's blocks are ``periods`` equal runs of returns when given (the significance
    periods of :class:`OptimizeSettings`), else :func:`blocks_for` ``n_blocks``. Raises
    :class:`InvalidInputError` when no set makes ``min_trades`` trades, or when ``periods`` ×
    sets would exceed :data:`MAX_PERIOD_CELLS`."""
    sets = fitting_sets(strategy, sets, len(candles))
    if periods is not None and periods * len(sets) > MAX_PERIOD_CELLS:
        raise InvalidInputError(
            f"{len(sets):,} sets × {periods:,} significance periods is more than "
            f"{MAX_PERIOD_CELLS:,}; use a longer --significance-period (e.g. 1d or 1w) or "
            "fewer sets"
        )
    sweep = run_sweep(
        candles,
        strategy,
        sets,
        interval=interval,
        n_blocks=blocks_for(len(candles) - 1, n_blocks) if periods is None else periods,
        **broker.kwargs(),
    )
    candidates = eligible(sweep, min_trades)
    return sweep, candidates.rank(objective, top=min(top, len(candidates.slugs)))


def eligible(sweep: SweepResult, min_trades: int) -> SweepResult:
    """The sets of ``sweep`` with at least ``min_trades`` closed trades, as a sweep of their own
    (same blocks, same order): what is ranked, and what the statistics count as trials. Raises
    :class:`InvalidInputError` when none is left."""
    if min_trades <= 0:
        return sweep
    trades = sweep.figures["trade_count"].to_numpy(dtype=np.float64)
    keep = np.flatnonzero(trades >= min_trades)
    if keep.size == len(sweep.slugs):
        return sweep
    if keep.size == 0:
        most = int(np.nanmax(trades)) if np.isfinite(trades).any() else 0
        raise NoCandidateError(
            f"no set of the {len(sweep.slugs):,} searched made --min-trades {min_trades} "
            f"closed trades (the most: {most}); lower --min-trades or search more active sets"
        )
    return replace(
        sweep,
        params=[sweep.params[i] for i in keep],
        slugs=[sweep.slugs[i] for i in keep],
        figures=sweep.figures.iloc[keep],
        block_sum=sweep.block_sum[keep],
        block_sumsq=sweep.block_sumsq[keep],
        block_count=sweep.block_count[keep],
    )


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


MIN_BLOCK_RETURNS = 4
"""Fewest (significance-period) returns a CSCV block may hold: with 16 blocks each half then has
at least 32 returns for its Sharpe ratio; fewer per block and a half's Sharpe ratio is noise."""


def blocks_for(returns: int, wanted: int = DEFAULT_BLOCKS) -> int:
    """CSCV blocks for ``returns`` returns: ``wanted`` (16) when every block gets at least
    :data:`MIN_BLOCK_RETURNS`, else the largest even number that does, at least 2."""
    fitting = max(2, returns // MIN_BLOCK_RETURNS)
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


def check_recheck(recheck: int, engine: str) -> None:
    """Refuse a bad ``--recheck`` / ``--recheck-engine`` in one line, before any candle is
    read."""
    if recheck < 0:
        raise InvalidInputError(f"--recheck {recheck}: use 0 or more")
    if engine not in RECHECK_ENGINES:
        raise InvalidInputError(
            f"--recheck-engine {engine!r}: use one of {', '.join(RECHECK_ENGINES)}"
        )


def compare(
    sweep: SweepResult, slug: str, run: BacktestResult, *, engine: str = "backtrader"
) -> Recheck:
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
    return Recheck(slug=slug, reproduced=reproduced, differences=differences, engine=engine)


def trial_moments(period_returns: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per-period Sharpe ratio (``mean / std(ddof=1)``) of each row of a sets × periods matrix;
    NaN under two periods or without dispersion (as :mod:`.statistics` defines it)."""
    n = period_returns.shape[1]
    if n < 2:
        return np.full(period_returns.shape[0], np.nan)
    mean = period_returns.mean(axis=1)
    std = period_returns.std(axis=1, ddof=1)
    scale = np.abs(period_returns).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = mean / std
    sharpe[~(std > ZERO_DISPERSION * scale)] = np.nan
    return np.asarray(sharpe, dtype=np.float64)


def overfitting_statistics(
    sweep: SweepResult,
    winner: str,
    *,
    settings: OptimizeSettings | None = None,
    n_blocks: int = DEFAULT_BLOCKS,
) -> dict[str, Any]:
    """PSR, DSR, haircut Sharpe ratio and MinTRL of ``winner`` and PBO of the search, as
    JSON-ready numbers (null where undefined), from a sweep whose blocks are the significance
    periods (:meth:`OptimizeSettings.periods`): a period's return is the sum of its per-bar
    simple returns, so every statistic counts periods, not bars.

    Only the sets with at least ``settings.min_trades`` trades are trials. Sharpe ratios are
    per period inside the statistics and annualised where named ``..._annualised``
    (``· √(periods per year)``). The DSR's variance is :func:`null_sharpe_variance` — the
    sampling variance of a skill-less trial's Sharpe ratio — and the cross-sectional variance
    of the paper's example gives ``dsr_cross_sectional`` beside it (docs/research.md says why).
    """
    settings = settings or OptimizeSettings()
    trials = eligible(sweep, settings.min_trades)
    period_returns = np.asarray(trials.block_sum, dtype=np.float64)
    n_periods = int(period_returns.shape[1])
    bars_per_period = settings.bars_per_period(sweep.interval)
    per_year = MS_PER_YEAR / (bars_per_period * interval_ms(sweep.interval))
    root = math.sqrt(per_year)
    trial_sharpes = trial_moments(period_returns)
    returns = period_returns[trials.slugs.index(winner)]
    null_variance = null_sharpe_variance(n_periods)
    deflated = deflated_sharpe_ratio(
        returns,
        trial_sharpes,
        variance=null_variance if n_periods >= 2 else None,
    )
    cross = deflated_sharpe_ratio(returns, trial_sharpes)
    sharpe, skew, kurtosis, n_trials = (
        deflated.sharpe,
        deflated.skew,
        deflated.kurtosis,
        deflated.n_trials,
    )
    defined = not math.isnan(sharpe) and n_periods >= 2
    psr = probabilistic_sharpe_ratio(sharpe, n_periods, skew, kurtosis) if defined else math.nan
    haircut = (
        haircut_sharpe_ratio(sharpe, n_periods, skew, kurtosis, max(1, n_trials))
        if defined
        else math.nan
    )
    min_trl = minimum_track_record_length(sharpe, skew, kurtosis) if defined else math.nan
    min_trl_deflated = (
        minimum_track_record_length(sharpe, skew, kurtosis, deflated.expected_max_sharpe)
        if defined and math.isfinite(deflated.expected_max_sharpe)
        else math.nan
    )
    effective = effective_observations(returns)
    out: dict[str, Any] = {
        "significance_period": settings.significance_period,
        "bars_per_period": finite_or_none(bars_per_period),
        "effective_observations": n_periods,
        "winner_autocorrelation": finite_or_none(effective.autocorrelation),
        "effective_observations_adjusted": finite_or_none(effective.adjusted),
        "min_trades": settings.min_trades,
        "eligible_sets": len(trials.slugs),
        "n_trials": n_trials,
        "sharpe_variance": finite_or_none(deflated.sharpe_variance),
        "sharpe_variance_cross_sectional": finite_or_none(cross.sharpe_variance),
        "winner_sharpe_annualised": finite_or_none(sharpe * root),
        "expected_max_sharpe_annualised": finite_or_none(deflated.expected_max_sharpe * root),
        "psr": finite_or_none(psr),
        "psr_significant": bool(psr > SIGNIFICANCE),
        "dsr": finite_or_none(deflated.dsr),
        "dsr_significant": bool(deflated.significant),
        "dsr_cross_sectional": finite_or_none(cross.dsr),
        "expected_max_sharpe_cross_sectional_annualised": finite_or_none(
            cross.expected_max_sharpe * root
        ),
        "haircut_sharpe_annualised": finite_or_none(haircut * root),
        "min_track_record_periods": finite_or_none(min_trl),
        "min_track_record_periods_deflated": finite_or_none(min_trl_deflated),
        "pbo": None,
        "pbo_flat_as_zero": None,
        "pbo_blocks": None,
        "pbo_combinations": None,
        "pbo_tolerance": {"relative": PBO_RELATIVE_TOLERANCE, "absolute": PBO_ABSOLUTE_TOLERANCE},
        "probability_of_loss": None,
        "performance_degradation_slope": None,
    }
    if len(trials.slugs) >= 2 and n_periods >= 2:
        blocks = blocks_for(n_periods, n_blocks)
        pbo = pbo_by_convention(*blocks_from_returns(period_returns.T, blocks))
        worst, zero = pbo["worst"], pbo["zero"]
        out.update(
            pbo=finite_or_none(worst.pbo),
            pbo_flat_as_zero=finite_or_none(zero.pbo),
            pbo_blocks=blocks,
            pbo_combinations=worst.n_combinations,
            probability_of_loss=finite_or_none(worst.probability_of_loss),
            performance_degradation_slope=finite_or_none(worst.degradation_slope),
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
    min_trades: int = 0,
) -> str:
    """The deterministic key of one search over one series and window: searching again
    replaces the stored one. A search with another ``min_trades`` has other candidates, so
    another key (0, the behaviour before the setting, keeps the keys stored before it); the
    significance period changes only how the same winner is judged, so it is not part of it."""
    identity: list[Any] = [
        exchange,
        symbol,
        interval,
        spec.strategy,
        spec.model_dump(mode="json", exclude={"max_sets"}),
        objective,
        iso_utc(start),
        iso_utc(end),
    ]
    if min_trades:
        identity.append({"min_trades": min_trades})
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
