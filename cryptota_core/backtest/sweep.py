"""Parameter sweeps: one call evaluates a whole grid of parameter sets of one strategy over one
candle series, on the fast engine's semantics (DESIGN §5), without keeping any equity curve.

:func:`run_sweep` computes each indicator once per distinct parameter (RSI once per period,
SMA once per ``ma_period``), then runs every set in parallel on all cores
(:mod:`cryptota_core.backtest.kernels.sweep`) and returns a :class:`SweepResult`: per set the
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pandas as pd

from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.fast import run_fast_backtest, supports
from cryptota_core.backtest.inputs import check_settings, prepare_candles, resolve_strategy
from cryptota_core.backtest.kernels import figures as fig
from cryptota_core.backtest.kernels.indicators import rsi_table_nb, sma_table_nb
from cryptota_core.backtest.kernels.sweep import (
    balanced_order,
    divergence_sweep_nb,
    grid_sweep_nb,
    level_sweep_nb,
)
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.broker import DEFAULT_BROKER
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.intervals import interval_timedelta, parse_interval, periods_per_year
from cryptota_core.metrics import ZERO_DISPERSION
from cryptota_core.strategies import Strategy, StrategyParams
from cryptota_core.strategies.grid import GridParams
from cryptota_core.strategies.rsi import RsiParams
from cryptota_core.strategies.rsi_divergence import RsiDivergenceParams
from cryptota_core.strategies.rsi_ma import RsiMaParams

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

TILE_BARS = 8192
"""Bars each parallel lane of ``rsi``/``rsi_ma`` sets crosses before moving on: the prices and
indicator rows of a tile (~64 KB each) stay in the core's L2 cache while all its sets run."""

TABLE_BYTES = 512 * 2**20
"""Most memory the indicator rows of one batch of sets may take (RSI and SMA rows of 8 bytes
per bar); a grid with more distinct periods runs in several batches."""


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
    if supports(spec):
        table, block_sum, block_sumsq = _sweep_kernels(
            spec, models, warmups, frame, edges, interval, broker
        )
    else:  # a user strategy has no kernel: every set runs on backtrader (slow, same figures)
        log.info("%s has no sweep kernel: %d sets run on backtrader", spec.name, len(models))
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
        engine="fast" if supports(spec) else "backtrader",
    )


# --------------------------------------------------------------------------------- batches
def _sweep_kernels(
    spec: Strategy,
    models: list[StrategyParams],
    warmups: np.ndarray,
    frame: pd.DataFrame,
    edges: np.ndarray,
    interval: str,
    broker: dict[str, float],
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Figures and blocks of every set of a built-in strategy from the numba kernels."""
    prices = {
        c: np.ascontiguousarray(frame[c].to_numpy(dtype=np.float64))
        for c in ("open", "high", "low", "close")
    }
    settings = (
        float(broker["cash"]),
        float(broker["commission"]),
        float(broker["slippage"]),
        float(broker["stake"]),
    )
    if spec.name == "grid":
        acc, block_sum, block_sumsq = _sweep_grid(models, prices, edges, settings)
    elif spec.name == "rsi_divergence":
        acc, block_sum, block_sumsq = _sweep_divergence(models, warmups, prices, edges, settings)
    else:
        acc, block_sum, block_sumsq = _sweep_levels(models, warmups, prices, edges, settings)
    table = _figures(acc, block_sum, block_sumsq, len(frame), periods_per_year(interval))
    ruined = np.flatnonzero(~(acc[:, fig.A_EMIN] > 0.0) | ~np.isfinite(acc[:, fig.A_FINAL]))
    for i in ruined:  # exact figures from the full run (see the module docstring)
        slug = spec.slug(models[i])
        log.warning("%s: equity reached %g; figures from a full run", slug, acc[i, fig.A_EMIN])
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


def _batches(keys: Sequence[tuple[int, ...]], rows_per_batch: int) -> list[list[int]]:
    """Set indices sorted by their indicator keys (one int per indicator, e.g. (period,
    ma_period)), cut into batches whose distinct indicator rows fit ``rows_per_batch``."""
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    batches: list[list[int]] = []
    current: list[int] = []
    seen: list[set[int]] = [set() for _ in keys[0]]
    for i in order:
        rows = sum(len(s | {k}) for s, k in zip(seen, keys[i], strict=True))
        if current and rows > rows_per_batch:
            batches.append(current)
            current = []
            seen = [set() for _ in keys[0]]
        current.append(i)
        for s, k in zip(seen, keys[i], strict=True):
            s.add(k)
    batches.append(current)
    return batches


def _rows(values: list[int]) -> tuple[list[int], npt.NDArray[np.int64]]:
    """Distinct values (sorted) and each value's row among them."""
    distinct = sorted(set(values))
    where = {v: r for r, v in enumerate(distinct)}
    return distinct, np.array([where[v] for v in values], dtype=np.int64)


def _table(close: np.ndarray, periods: list[int], kernel: Any) -> np.ndarray:
    """One indicator row per period: RSI or SMA computed once each, rows in parallel."""
    return kernel(close, np.array(periods, dtype=np.int64))


def _lanes(count: int) -> np.ndarray:
    """Sets 0..count-1 (already sorted by indicator rows) dealt round-robin to one lane per
    thread, so both cores cross the same rows at the same time; −1 pads the last lane."""
    n_lanes = max(1, min(numba.get_num_threads(), count))
    width = -(-count // n_lanes)
    lanes = np.full((n_lanes, width), -1, dtype=np.int64)
    for i in range(count):
        lanes[i % n_lanes, i // n_lanes] = i
    return lanes


def _allocate(n_sets: int, n_blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.empty((n_sets, fig.A_FIELDS)),
        np.zeros((n_sets, n_blocks)),
        np.zeros((n_sets, n_blocks)),
    )


def _sweep_levels(
    models: list[StrategyParams],
    warmups: np.ndarray,
    prices: dict[str, np.ndarray],
    edges: np.ndarray,
    settings: tuple[float, float, float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rsi`` / ``rsi_ma``: shared RSI and SMA rows, tiled parallel lanes."""
    close = prices["close"]
    sets = [m for m in models if isinstance(m, RsiParams)]
    use_trend = all(isinstance(m, RsiMaParams) for m in sets)
    keys = [(int(m.period), int(m.ma_period) if isinstance(m, RsiMaParams) else 0) for m in sets]
    acc, block_sum, block_sumsq = _allocate(len(models), edges.shape[0] - 1)
    rows_per_batch = max(2, TABLE_BYTES // (8 * close.shape[0]))
    for batch in _batches(keys, rows_per_batch):
        rsi_periods, rsi_row = _rows([keys[i][0] for i in batch])
        rsi_table = _table(close, rsi_periods, rsi_table_nb)
        if use_trend:
            ma_periods, trend_row = _rows([keys[i][1] for i in batch])
            trend_table = _table(close, ma_periods, sma_table_nb)
        else:
            trend_row = np.zeros(len(batch), dtype=np.int64)
            trend_table = close[None, :]
        a, s, ss = level_sweep_nb(
            prices["open"],
            prices["high"],
            prices["low"],
            close,
            rsi_table,
            trend_table,
            rsi_row,
            trend_row,
            np.array([float(sets[i].oversold) for i in batch]),
            np.array([float(sets[i].overbought) for i in batch]),
            warmups[batch],
            use_trend,
            edges,
            *settings,
            _lanes(len(batch)),
            TILE_BARS,
        )
        acc[batch], block_sum[batch], block_sumsq[batch] = a, s, ss
    return acc, block_sum, block_sumsq


def _sweep_divergence(
    models: list[StrategyParams],
    warmups: np.ndarray,
    prices: dict[str, np.ndarray],
    edges: np.ndarray,
    settings: tuple[float, float, float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rsi_divergence``: shared RSI rows, one per-set pivot kernel per set."""
    close = prices["close"]
    sets = [m for m in models if isinstance(m, RsiDivergenceParams)]
    keys = [(int(m.period),) for m in sets]
    acc, block_sum, block_sumsq = _allocate(len(models), edges.shape[0] - 1)
    for batch in _batches(keys, max(1, TABLE_BYTES // (8 * close.shape[0]))):
        periods, rsi_row = _rows([keys[i][0] for i in batch])
        a, s, ss = divergence_sweep_nb(
            prices["open"],
            prices["high"],
            prices["low"],
            close,
            _table(close, periods, rsi_table_nb),
            rsi_row,
            np.array([int(sets[i].pivot_window) for i in batch], dtype=np.int64),
            np.array([int(sets[i].max_gap) for i in batch], dtype=np.int64),
            warmups[batch],
            edges,
            *settings,
            balanced_order(len(batch), numba.get_num_threads()),
        )
        acc[batch], block_sum[batch], block_sumsq[batch] = a, s, ss
    return acc, block_sum, block_sumsq


def _sweep_grid(
    models: list[StrategyParams],
    prices: dict[str, np.ndarray],
    edges: np.ndarray,
    settings: tuple[float, float, float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``grid``: one order-book simulation per set (no shared indicator; stake unused)."""
    sets = [m for m in models if isinstance(m, GridParams)]
    cash, commission, slippage, _ = settings
    return grid_sweep_nb(
        prices["open"],
        prices["high"],
        prices["low"],
        prices["close"],
        np.array([int(m.levels) for m in sets], dtype=np.int64),
        np.array([float(m.spacing_pct) for m in sets]),
        np.array([float(m.order_size) for m in sets]),
        edges,
        cash,
        commission,
        slippage,
        balanced_order(len(sets), numba.get_num_threads()),
    )


# --------------------------------------------------------------------------------- figures
def _figures(
    acc: np.ndarray, block_sum: np.ndarray, block_sumsq: np.ndarray, bars: int, periods: float
) -> dict[str, np.ndarray]:
    """Every figure of every set from the accumulators, with compute_metrics' formulas (see
    :mod:`cryptota_core.metrics`) and NaN where it reports None."""
    m = bars - 1  # returns
    nan = np.full(acc.shape[0], np.nan)
    with np.errstate(all="ignore"):
        final = acc[:, fig.A_FINAL].copy()
        total_return = final / acc[:, fig.A_FIRST] - 1.0
        # compute_metrics raises a Python float to a power: do the same, set by set
        annual = np.array(
            [float(np.power(float(w), periods / m) - 1.0) for w in acc[:, fig.A_WEALTH]]
        )
        mdd = acc[:, fig.A_MDD].copy()
        calmar = np.where(mdd < 0.0, annual / np.abs(mdd), np.nan)
        calmar[np.isinf(calmar)] = np.nan

        total = block_sum.sum(axis=1)
        mean = total / m
        var = np.maximum((block_sumsq.sum(axis=1) - total * mean) / (m - 1), 0.0)
        std = np.sqrt(var)
        largest = np.maximum(np.abs(acc[:, fig.A_RMIN]), np.abs(acc[:, fig.A_RMAX]))
        flat = (acc[:, fig.A_RMAX] == acc[:, fig.A_RMIN]) | (std <= ZERO_DISPERSION * largest)
        sharpe = np.where(flat | (m < 2), np.nan, mean / std * math.sqrt(periods))
        risk = np.sqrt(acc[:, fig.A_DOWN] / m) * math.sqrt(periods)
        sortino = np.where((risk == 0.0) | (m < 2), np.nan, mean * periods / risk)

        trades = acc[:, fig.A_TRADES].copy()
        win_rate = np.where(trades > 0, acc[:, fig.A_WINS] / trades, np.nan)
        pnl_mean = acc[:, fig.A_PNL] / trades
        pnl_var = (acc[:, fig.A_PNL2] - acc[:, fig.A_PNL] * pnl_mean) / (trades - 1)
        pnl_std = np.where(
            acc[:, fig.A_PNL_MAX] == acc[:, fig.A_PNL_MIN], 0.0, np.sqrt(np.maximum(pnl_var, 0))
        )
        sqn = np.where((trades >= 2) & (pnl_std > 0), np.sqrt(trades) * pnl_mean / pnl_std, nan)
        exposure = acc[:, fig.A_EXPOSURE] / bars
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
