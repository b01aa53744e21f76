"""Walk-forward analysis: optimise in sample, trade the winner out of sample, roll forward.

The candles are cut into ``windows`` consecutive out-of-sample (OOS) windows of equal length,
each preceded by its in-sample (IS) window: ``in_sample_ratio`` times as long (rolling), or
everything from the first candle (anchored). In each IS window the grid is swept
(:func:`~cryptota_core.research.optimize.optimize` without re-checks) and the winner by the
objective is then backtested on the following OOS window on the fast engine — from flat, with the
winner's warm-up bars before the window as its only history, exactly as ``cryptota backtest``
would run it there. No OOS candle ever influences a choice.

What it reports:

* per window: the winner, its IS score and annual return, its OOS metrics;
* the **stitched OOS equity curve**: each window's OOS equity, chained so each starts where the
  previous ended (what trading the walk-forward would have earned);
* **walk-forward efficiency** (Pardo): mean annualised OOS return ÷ mean annualised IS return of
  the chosen sets — near 1 when OOS holds up, ≤ 0 when the IS edge does not survive;
* **parameter stability**: per parameter, how many distinct values the windows chose and the
  share of windows that chose the most common one (1.0: the same value every time).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptota_core.backtest.fast import run_fast_backtest
from cryptota_core.backtest.inputs import prepare_candles
from cryptota_core.backtest.result import iso_utc
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.intervals import interval_timedelta
from cryptota_core.metrics import compute_metrics
from cryptota_core.numbers import finite_or_none
from cryptota_core.research.optimize import BrokerSettings, objective_column, sweep_ranked
from cryptota_core.research.search import SearchSpec, parameter_sets
from cryptota_core.strategies import StrategyParams, get_strategy

log = logging.getLogger(__name__)

MIN_WINDOW_BARS = 50
"""Fewest candles an in-sample or out-of-sample window may have: fewer cannot rank anything."""


@dataclass(frozen=True)
class Split:
    """Bar indices of one walk-forward window: in sample ``[is_start, is_end)``, out of sample
    ``[oos_start, oos_end)`` with ``is_end == oos_start``."""

    is_start: int
    is_end: int
    oos_start: int
    oos_end: int


def splits(bars: int, *, windows: int, in_sample_ratio: float, anchored: bool) -> list[Split]:
    """The windows of a walk-forward over ``bars`` candles (see the module docstring)."""
    if windows < 1:
        raise InvalidInputError(f"--windows {windows}: use at least 1 out-of-sample window")
    if not in_sample_ratio > 0:
        raise InvalidInputError(f"--in-sample-ratio {in_sample_ratio}: use a positive number")
    oos = int(bars // (in_sample_ratio + windows))
    first = bars - windows * oos
    if oos < MIN_WINDOW_BARS or first < MIN_WINDOW_BARS:
        raise InvalidInputError(
            f"too little data for the split: {bars} candles give {windows} out-of-sample windows "
            f"of {oos} and an in-sample window of {first}; each needs at least "
            f"{MIN_WINDOW_BARS} — load a longer window, use fewer --windows or a smaller "
            "--in-sample-ratio"
        )
    out = []
    for k in range(windows):
        oos_start = first + k * oos
        oos_end = bars if k == windows - 1 else oos_start + oos
        is_start = 0 if anchored else oos_start - first
        out.append(Split(is_start, oos_start, oos_start, oos_end))
    return out


@dataclass(frozen=True)
class WindowResult:
    """One walk-forward window: what was chosen in sample and how it did out of sample."""

    window_no: int
    in_sample_start: pd.Timestamp
    in_sample_end: pd.Timestamp
    out_sample_start: pd.Timestamp
    out_sample_end: pd.Timestamp
    best_slug: str
    best_params: dict[str, Any]
    in_sample_score: float | None
    in_sample_annual_return: float | None
    out_sample_score: float | None
    out_sample_return: float | None
    out_sample_annual_return: float | None
    out_sample_metrics: dict[str, float | None]


@dataclass(frozen=True)
class WalkForwardResult:
    """A finished walk-forward over one candle series."""

    strategy: str
    interval: str
    objective: str
    spec: SearchSpec
    anchored: bool
    in_sample_ratio: float
    windows: list[WindowResult]
    oos_equity: pd.Series
    """The stitched out-of-sample equity curve, starting at the cash."""
    statistics: dict[str, Any]

    def windows_frame(self) -> pd.DataFrame:
        """One row per window (the ``walk_forward_windows`` columns that are numbers)."""
        return pd.DataFrame(
            [
                {
                    "window": w.window_no,
                    "in_sample": _span(w.in_sample_start, w.in_sample_end),
                    "out_of_sample": _span(w.out_sample_start, w.out_sample_end),
                    "best_slug": w.best_slug,
                    "in_sample_score": w.in_sample_score,
                    "out_sample_score": w.out_sample_score,
                    "out_sample_return": w.out_sample_return,
                }
                for w in self.windows
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: the ``cryptota walk-forward --json`` object."""
        return {
            "strategy": self.strategy,
            "interval": self.interval,
            "objective": self.objective,
            "grid": self.spec.grid,
            "anchored": self.anchored,
            "in_sample_ratio": self.in_sample_ratio,
            "windows": [
                {
                    "window_no": w.window_no,
                    "in_sample_start": iso_utc(w.in_sample_start),
                    "in_sample_end": iso_utc(w.in_sample_end),
                    "out_sample_start": iso_utc(w.out_sample_start),
                    "out_sample_end": iso_utc(w.out_sample_end),
                    "best_slug": w.best_slug,
                    "best_params": w.best_params,
                    "in_sample_score": w.in_sample_score,
                    "in_sample_annual_return": w.in_sample_annual_return,
                    "out_sample_score": w.out_sample_score,
                    "out_sample_return": w.out_sample_return,
                    "out_sample_annual_return": w.out_sample_annual_return,
                    "out_sample_metrics": w.out_sample_metrics,
                }
                for w in self.windows
            ],
            "statistics": self.statistics,
        }


def _span(start: pd.Timestamp, end: pd.Timestamp) -> str:
    return f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}"


def walk_forward(
    candles: pd.DataFrame,
    spec: SearchSpec,
    *,
    interval: str,
    objective: str = "sharpe",
    windows: int = 5,
    in_sample_ratio: float = 3.0,
    anchored: bool = False,
    broker: BrokerSettings | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    sets: Sequence[StrategyParams] | None = None,
) -> WalkForwardResult:
    """Run the walk-forward of the module docstring over ``candles`` (``sets``: the expanded
    parameter sets of ``spec``, when the caller has them)."""
    broker = broker or BrokerSettings()
    column = objective_column(objective)
    strategy = get_strategy(spec.strategy)
    sets = list(sets) if sets is not None else parameter_sets(spec)
    frame = prepare_candles(candles)
    index = pd.DatetimeIndex(frame.index)
    step = interval_timedelta(interval)
    cuts = splits(len(frame), windows=windows, in_sample_ratio=in_sample_ratio, anchored=anchored)
    report = progress or (lambda _stage, _done, _total: None)

    results: list[WindowResult] = []
    pieces: list[pd.Series] = []
    value = broker.cash
    for k, cut in enumerate(cuts):
        report("windows", k, len(cuts))
        sweep, (slug,) = sweep_ranked(
            frame.iloc[cut.is_start : cut.is_end],
            strategy,
            sets,
            interval=interval,
            objective=column,
            top=1,
            broker=broker,
        )
        model = sweep.params[sweep.slugs.index(slug)]
        figures = sweep.figures.loc[slug].to_dict()
        history = min(strategy.warmup(model), cut.oos_start)
        run = run_fast_backtest(
            frame.iloc[cut.oos_start - history : cut.oos_end],
            strategy,
            model,
            interval=interval,
            **broker.kwargs(),
        )
        equity = run.equity.iloc[history:]
        closes = frame["close"].iloc[cut.oos_start : cut.oos_end]
        metrics = compute_metrics(
            equity,
            run.trades,
            interval=interval,
            benchmark=closes,
            exposure_bars=None,
        )
        results.append(
            WindowResult(
                window_no=k,
                in_sample_start=index[cut.is_start],
                in_sample_end=index[cut.is_end - 1] + step,
                out_sample_start=index[cut.oos_start],
                out_sample_end=index[cut.oos_end - 1] + step,
                best_slug=slug,
                best_params=model.model_dump(mode="json"),
                in_sample_score=finite_or_none(figures[column]),
                in_sample_annual_return=finite_or_none(figures["annual_return"]),
                out_sample_score=finite_or_none(metrics.get(column)),
                out_sample_return=finite_or_none(metrics.get("total_return")),
                out_sample_annual_return=finite_or_none(metrics.get("annual_return")),
                out_sample_metrics={
                    name: finite_or_none(metrics.get(name))
                    for name in ("total_return", "sharpe_ratio", "max_drawdown", "trade_count")
                },
            )
        )
        scaled = equity / float(equity.iloc[0]) * value
        pieces.append(scaled if not pieces else scaled.iloc[1:])
        value = float(scaled.iloc[-1])
    report("windows", len(cuts), len(cuts))
    stitched = pd.concat(pieces).rename("equity")
    return WalkForwardResult(
        strategy=strategy.name,
        interval=interval,
        objective=column,
        spec=spec,
        anchored=anchored,
        in_sample_ratio=in_sample_ratio,
        windows=results,
        oos_equity=stitched,
        statistics=walk_forward_statistics(results, stitched, interval),
    )


def walk_forward_statistics(
    windows: list[WindowResult], stitched: pd.Series, interval: str
) -> dict[str, Any]:
    """Efficiency, stitched out-of-sample performance and parameter stability (JSON-ready)."""
    stitched_metrics = compute_metrics(stitched, _no_trades(), interval=interval)
    in_returns = [
        w.in_sample_annual_return for w in windows if w.in_sample_annual_return is not None
    ]
    out_returns = [
        w.out_sample_annual_return for w in windows if w.out_sample_annual_return is not None
    ]
    efficiency = None
    if in_returns and out_returns and np.mean(in_returns) != 0:
        efficiency = finite_or_none(float(np.mean(out_returns) / np.mean(in_returns)))
    stability: dict[str, dict[str, Any]] = {}
    for name in windows[0].best_params if windows else []:
        chosen = [w.best_params[name] for w in windows]
        counts = Counter(json_key(v) for v in chosen)
        stability[name] = {
            "distinct": len(counts),
            "modal_share": max(counts.values()) / len(chosen),
            "values": chosen,
        }
    profitable = [w for w in windows if (w.out_sample_return or 0.0) > 0.0]
    slugs = Counter(w.best_slug for w in windows)
    return {
        "windows": len(windows),
        "walk_forward_efficiency": efficiency,
        "oos_total_return": finite_or_none(stitched_metrics.get("total_return")),
        "oos_sharpe_ratio": finite_or_none(stitched_metrics.get("sharpe_ratio")),
        "oos_max_drawdown": finite_or_none(stitched_metrics.get("max_drawdown")),
        "profitable_windows": len(profitable) / len(windows) if windows else None,
        "modal_slug": slugs.most_common(1)[0][0] if windows else None,
        "modal_slug_share": slugs.most_common(1)[0][1] / len(windows) if windows else None,
        "parameter_stability": stability,
    }


def json_key(value: Any) -> str:
    """A hashable, order-stable key of a parameter value."""
    return (
        repr(float(value))
        if isinstance(value, int | float) and not math.isnan(value)
        else str(value)
    )


def _no_trades() -> pd.DataFrame:
    from cryptota_core.trades import empty_trades

    return empty_trades()
