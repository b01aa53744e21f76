"""Parameter sweeps: one call evaluates a whole grid of parameter sets of one strategy over one
candle series, on the fast engine's semantics (DESIGN §5), without keeping any equity curve.

:func:`run_sweep` computes each indicator once per distinct parameter (RSI once per period,
SMA once per ``ma_period``), then runs every set in parallel on all cores
(:mod:`cryptota_core.kernels.sweep`) and returns a :class:`SweepResult`: per set the
headline figures, named and defined exactly as :func:`~cryptota_core.metrics.compute_metrics`
defines them, and per-block sums of the per-bar returns for overfitting statistics (PBO/CSCV,
deflated Sharpe in :mod:`cryptota_core.research.statistics`).

How close the figures are to ``compute_metrics`` on the fast engine's run of the same set:

* ``equity_final``, ``total_return``, ``annual_return``, ``max_drawdown``, ``calmar_ratio``,
  ``trade_count``, ``win_rate`` and ``exposure_pct`` are **equal** (:data:`EXACT_FIGURES`);
* ``sharpe_ratio``, ``sortino_ratio`` and ``sqn`` come from sums taken in another order, so they
  agree to :data:`RELATIVE_TOLERANCE` relative to the figure **or** to the scale it divides
  (:func:`figure_tolerance`): a ratio whose mean is nearly zero can differ in relative terms
  while its absolute difference stays at rounding level.

Figures are NaN where compute_metrics reports None (undefined, e.g. a Sharpe ratio of a flat
curve). A set whose equity ever reaches zero or below (possible only for a grid that went short
when its rebalancing buy was rejected) has its figures and blocks taken from a full fast-engine
run instead, since the streaming drawdown assumes a positive curve.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from cryptota_core.backtest.engines import engine_runner
from cryptota_core.backtest.fast import prices_of, run_fast_backtest
from cryptota_core.backtest.inputs import (
    check_settings,
    prepare_candles,
    resolve_strategy,
)
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.broker import DEFAULT_BROKER, BrokerSettings
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.intervals import interval_timedelta, parse_interval, periods_per_year
from cryptota_core.metrics import ZERO_DISPERSION
from cryptota_core.strategies import Strategy, StrategyParams
from cryptota_core.strategies.kernel import StrategyKernel

__all__ = [
    "EXACT_FIGURES",
    "FIGURES",
    "OBJECTIVES",
    "RELATIVE_TOLERANCE",
    "SweepResult",
    "figure_tolerance",
    "run_sweep",
]

log = logging.getLogger(__name__)

FIGURES: tuple[str, ...] = (
    "equity_final",
    "total_return",
    "annual_return",
    "max_drawdown",
    "sharpe_ratio",
    "sortino_ratio",
    "calmar_ratio",
    "trade_count",
    "win_rate",
    "sqn",
    "exposure_pct",
)
"""Columns of :attr:`SweepResult.figures`: compute_metrics' names for the same numbers."""

EXACT_FIGURES: tuple[str, ...] = (
    "equity_final",
    "total_return",
    "annual_return",
    "max_drawdown",
    "calmar_ratio",
    "trade_count",
    "win_rate",
    "exposure_pct",
)
"""Figures equal to compute_metrics' values, bit for bit."""

RELATIVE_TOLERANCE = 1e-12
"""Agreement of ``sharpe_ratio``, ``sortino_ratio`` and ``sqn`` with compute_metrics (see
:func:`figure_tolerance`)."""

OBJECTIVES: dict[str, str] = {
    "sharpe_ratio": "sharpe_ratio",
    "sharpe": "sharpe_ratio",
    "sortino_ratio": "sortino_ratio",
    "sortino": "sortino_ratio",
    "calmar_ratio": "calmar_ratio",
    "calmar": "calmar_ratio",
    "total_return": "total_return",
    "annual_return": "annual_return",
    "max_drawdown": "max_drawdown",
    "sqn": "sqn",
    "win_rate": "win_rate",
}
"""What :meth:`SweepResult.rank` can rank by (higher is better for all of them; the maximum
drawdown is negative, so the shallowest ranks first), with short aliases for the CLI."""


@dataclass(frozen=True)
class SweepResult:
    """Figures of every parameter set of one sweep, and their per-block return statistics.

    ``figures`` has one row per set (index: the set's slug, in the order given) and the columns
    of :data:`FIGURES`. ``block_sum``, ``block_sumsq`` and ``block_count`` (shape ``(sets,
    n_blocks)``; float64, float64, int64) hold, per set and per block, the sum of the per-bar
    returns, of their squares, and their number. The ``bars − 1`` returns (bar 0 has none) are
    split into ``n_blocks`` contiguous blocks of equal size give or take one: return ``j`` (of
    bar ``j + 1``) is in block ``b`` when ``edges[b] <= j < edges[b + 1]`` with ``edges =
    (arange(n_blocks + 1) * (bars − 1)) // n_blocks``. The window is ``[candle_start,
    candle_end)``.
    """

    strategy: str
    interval: str
    bars: int
    params: list[StrategyParams]
    slugs: list[str]
    figures: pd.DataFrame
    block_sum: npt.NDArray[np.float64]
    block_sumsq: npt.NDArray[np.float64]
    block_count: npt.NDArray[np.int64]
    candle_start: pd.Timestamp
    candle_end: pd.Timestamp
    engine: str = "fast"
    """What computed the figures: ``fast`` (the numba sweep kernels) or ``backtrader`` (a
    strategy without a kernel). A re-check on the engine that swept proves nothing."""

    def rank(self, objective: str = "sharpe_ratio", top: int = 10) -> list[str]:
        """Slugs of the ``top`` best sets by ``objective`` (one of :data:`OBJECTIVES`), best
        first; undefined (NaN) values rank last and ties keep grid order. Objectives the sweep
        does not stream (profit factor, omega, …): rank the top sets by one of these, then run
        them on an engine for the full metrics."""
        column = OBJECTIVES.get(objective)
        if column is None:
            raise InvalidInputError(
                f"cannot rank a sweep by {objective!r}; use one of {', '.join(OBJECTIVES)}"
            )
        if not (isinstance(top, int) and top >= 1):
            raise InvalidInputError(f"top={top!r}: ask for at least 1 parameter set")
        values = self.figures[column].to_numpy(dtype=np.float64)
        keys = np.where(np.isnan(values), np.inf, -values)
        order = np.argsort(keys, kind="stable")
        return [self.slugs[i] for i in order[:top]]


def figure_tolerance(name: str, expected: float, periods: float) -> float:
    """Largest difference between a sweep figure and compute_metrics' value that the sweep
    guarantees: 0 for :data:`EXACT_FIGURES`; for ``sharpe_ratio`` and ``sortino_ratio``
    ``RELATIVE_TOLERANCE × (|expected| + sqrt(periods))`` — the per-bar ratio (the figure ÷
    √periods) agrees to 1e-12 relative or absolute; for ``sqn`` ``RELATIVE_TOLERANCE ×
    (|expected| + 1)``."""
    if name in EXACT_FIGURES:
        return 0.0
    scale = math.sqrt(periods) if name in ("sharpe_ratio", "sortino_ratio") else 1.0
    return RELATIVE_TOLERANCE * (abs(expected) + scale)


def run_sweep(
    candles: pd.DataFrame,
    strategy: str | Strategy | type[Strategy],
    param_sets: Iterable[StrategyParams | Mapping[str, Any]],
    *,
    interval: str,
    cash: float = DEFAULT_BROKER.cash,
    commission: float = DEFAULT_BROKER.commission,
    slippage: float = DEFAULT_BROKER.slippage,
    stake: float = DEFAULT_BROKER.stake,
    n_blocks: int = 16,
) -> SweepResult:
    """Evaluate every parameter set of ``strategy`` in ``param_sets`` over ``candles``.

    Each set is what :func:`~cryptota_core.backtest.fast.run_fast_backtest` would run with the
    same broker settings (same fills, same equity); the result holds its figures and block
    statistics, not its trades. A user strategy, which has no kernel, runs set by set on
    backtrader with the same figures (slowly). Raises :class:`InvalidInputError` for an unknown
    strategy, an empty grid, a set of another strategy, a duplicate set, bad settings, or
    candles too short for the blocks or for a set's warm-up."""
    interval = parse_interval(interval)
    spec = resolve_strategy(strategy)
    given = [] if isinstance(param_sets, str | bytes | Mapping) else list(param_sets)
    if not given:
        raise InvalidInputError(
            f"an empty grid for {spec.name}: pass a list of parameter sets, e.g. from "
            "Strategy.expand_grid"
        )
    models = [spec.parse_params(p) for p in given]
    slugs = [spec.slug(m) for m in models]
    if len(set(slugs)) != len(slugs):
        twice = next(s for s in slugs if slugs.count(s) > 1)
        raise InvalidInputError(f"parameter set {twice} appears twice in the grid; pass it once")
    check_settings(cash=cash, commission=commission, slippage=slippage, stake=stake)
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1:
        raise InvalidInputError(f"n_blocks={n_blocks!r}: use a whole number of blocks such as 16")
    frame = prepare_candles(candles)
    bars = len(frame)
    if bars - 1 < n_blocks:
        raise InvalidInputError(
            f"{bars} candles give {bars - 1} returns, too few for {n_blocks} blocks; "
            "load a longer window or use fewer blocks"
        )
    warmups = np.array([spec.warmup(m) for m in models], dtype=np.int64)
    longest = int(np.argmax(warmups))
    if bars < warmups[longest] + 2:
        raise InvalidInputError(
            f"{slugs[longest]} needs at least {warmups[longest] + 2} candles (warm-up "
            f"{warmups[longest]}, then a signal bar and a fill bar), got {bars}; "
            "load a longer window or drop the longest periods from the grid"
        )

    edges = (np.arange(n_blocks + 1, dtype=np.int64) * (bars - 1)) // n_blocks
    broker = {"cash": cash, "commission": commission, "slippage": slippage, "stake": stake}
    kernel = spec.fast_kernel()
    if kernel is not None:
        table, block_sum, block_sumsq = _sweep_kernel(
            kernel, spec, models, warmups, frame, edges, interval, broker
        )
    else:  # a user strategy has no kernel: every set runs on backtrader (slow, same figures)
        log.info("%s has no sweep kernel: %d sets run on backtrader", spec.name, len(models))
        run_backtest = engine_runner("backtrader")
        table = {name: np.full(len(models), np.nan) for name in FIGURES}
        block_sum = np.zeros((len(models), n_blocks))
        block_sumsq = np.zeros((len(models), n_blocks))
        for i, model in enumerate(models):
            run = run_backtest(frame, spec, model, interval=interval, **broker)
            _take_figures(run, i, edges, table, block_sum, block_sumsq)
    counts = np.diff(edges).astype(np.int64)
    index = pd.DatetimeIndex(frame.index)
    return SweepResult(
        strategy=spec.name,
        interval=interval,
        bars=bars,
        params=models,
        slugs=slugs,
        figures=pd.DataFrame(table, index=pd.Index(slugs, name="slug"), columns=list(FIGURES)),
        block_sum=block_sum,
        block_sumsq=block_sumsq,
        block_count=np.tile(counts, (len(models), 1)),
        candle_start=index[0],
        candle_end=index[-1] + interval_timedelta(interval),
        engine="fast" if kernel is not None else "backtrader",
    )


# --------------------------------------------------------------------------------- kernels
def _sweep_kernel(
    kernel: StrategyKernel,
    spec: Strategy,
    models: list[StrategyParams],
    warmups: np.ndarray,
    frame: pd.DataFrame,
    edges: np.ndarray,
    interval: str,
    broker: dict[str, float],
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Figures and blocks of every set from the strategy's kernel (its sweep entry)."""
    acc, block_sum, block_sumsq = kernel.sweep(
        models, prices_of(frame), warmups, edges, BrokerSettings(**broker)
    )
    table = _figures(acc, block_sum, block_sumsq, len(frame), periods_per_year(interval))
    ruined = np.flatnonzero(~(acc["emin"] > 0.0) | ~np.isfinite(acc["final"]))
    for i in ruined:  # exact figures from the full run (see the module docstring)
        slug = spec.slug(models[i])
        log.warning("%s: equity reached %g; figures from a full run", slug, acc["emin"][i])
        run = run_fast_backtest(frame, spec, models[i], interval=interval, **broker)
        _take_figures(run, int(i), edges, table, block_sum, block_sumsq)
    return table, block_sum, block_sumsq


def _take_figures(
    run: BacktestResult,
    i: int,
    edges: np.ndarray,
    table: dict[str, np.ndarray],
    block_sum: np.ndarray,
    block_sumsq: np.ndarray,
) -> None:
    """Set ``i``'s figures and blocks from a full run's metrics and equity curve."""
    for name in FIGURES:
        value = run.metrics[name]
        table[name][i] = math.nan if value is None else value
    returns = run.equity.pct_change().to_numpy()[1:]
    block_sum[i] = np.add.reduceat(returns, edges[:-1])
    block_sumsq[i] = np.add.reduceat(returns * returns, edges[:-1])


# --------------------------------------------------------------------------------- figures
def _figures(
    acc: np.ndarray, block_sum: np.ndarray, block_sumsq: np.ndarray, bars: int, periods: float
) -> dict[str, np.ndarray]:
    """Every figure of every set from the accumulators, with compute_metrics' formulas (see
    :mod:`cryptota_core.metrics`) and NaN where it reports None."""
    m = bars - 1  # returns
    nan = np.full(acc.shape[0], np.nan)
    with np.errstate(all="ignore"):
        final = acc["final"].copy()
        total_return = final / acc["first"] - 1.0
        # compute_metrics raises a Python float to a power: do the same, set by set
        annual = np.array([float(np.power(float(w), periods / m) - 1.0) for w in acc["wealth"]])
        mdd = acc["mdd"].copy()
        calmar = np.where(mdd < 0.0, annual / np.abs(mdd), np.nan)
        calmar[np.isinf(calmar)] = np.nan

        total = block_sum.sum(axis=1)
        mean = total / m
        var = np.maximum((block_sumsq.sum(axis=1) - total * mean) / (m - 1), 0.0)
        std = np.sqrt(var)
        largest = np.maximum(np.abs(acc["rmin"]), np.abs(acc["rmax"]))
        flat = (acc["rmax"] == acc["rmin"]) | (std <= ZERO_DISPERSION * largest)
        sharpe = np.where(flat | (m < 2), np.nan, mean / std * math.sqrt(periods))
        risk = np.sqrt(acc["down"] / m) * math.sqrt(periods)
        sortino = np.where((risk == 0.0) | (m < 2), np.nan, mean * periods / risk)

        trades = acc["trades"].copy()
        win_rate = np.where(trades > 0, acc["wins"] / trades, np.nan)
        pnl_mean = acc["pnl"] / trades
        pnl_var = (acc["pnl2"] - acc["pnl"] * pnl_mean) / (trades - 1)
        pnl_std = np.where(acc["pnl_max"] == acc["pnl_min"], 0.0, np.sqrt(np.maximum(pnl_var, 0)))
        sqn = np.where((trades >= 2) & (pnl_std > 0), np.sqrt(trades) * pnl_mean / pnl_std, nan)
        exposure = acc["exposure"] / bars
    return {
        "equity_final": final,
        "total_return": total_return,
        "annual_return": annual,
        "max_drawdown": mdd,
        "sharpe_ratio": sharpe,
        "sortino_ratio": sortino,
        "calmar_ratio": calmar,
        "trade_count": trades,
        "win_rate": win_rate,
        "sqn": sqn,
        "exposure_pct": exposure,
    }
