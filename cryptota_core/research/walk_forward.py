"""Walk-forward analysis: optimise in sample, trade the winner out of sample, roll forward.

The candles are cut into ``windows`` consecutive out-of-sample (OOS) windows of equal length,
each preceded by its in-sample (IS) window: ``in_sample_ratio`` times as long (rolling), or
everything from the first candle (anchored). In each IS window the grid is swept
(:func:`~cryptota_core.research.optimize.optimize` without re-checks) and the winner by the
objective then trades the following OOS window on the fast engine, as a practitioner would run
it (:func:`out_of_sample_run`):

* **warm-up on all earlier candles**: the winner's indicators are computed on every candle from
  the first one loaded up to the window's end, so at the window's start they are what they
  would be live (all earlier candles are known then), not restarted ``period`` bars before it;
* **flat at the start**: the first decision is taken at the close of the last IS bar (when the
  IS window, and so the choice, is complete), so the first possible fill is the window's first
  open; the OOS equity starts at the cash at that close;
* **flat at the end**: a position still open at the window's last close is sold there, at
  ``close × (1 − slippage)`` floored at the bar's low (the engine's slippage rule for a market
  sell), paying its commission; so a window that never trades returns exactly 0, and the next
  window starts flat, as the first one does.

No candle after a window's end ever influences that window.

What it reports:

* per window: the winner, its IS score and annualised log return, its OOS metrics and
  annualised log return (never a CAGR: compounding a one-week window to a year blows up);
* the **stitched OOS equity curve**: each window's OOS equity, chained so each starts where the
  previous ended (what trading the walk-forward would have earned);
* **walk-forward efficiency** (Pardo): the median over windows of OOS annualised log return ÷ IS
  annualised log return (:func:`walk_forward_efficiency`), near 1 when OOS holds up, ≤ 0 when
  the IS edge does not survive, with the number of windows it is computed over;
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

from cryptota_core.backtest.fast import prices_of, run_fast_backtest, supports
from cryptota_core.backtest.inputs import prepare_candles
from cryptota_core.backtest.records import trades_from_fills
from cryptota_core.backtest.result import iso_utc
from cryptota_core.errors import InvalidInputError
from cryptota_core.kernels.broker import STATUS_FILLED, simulate_long_nb
from cryptota_core.market.intervals import interval_timedelta, periods_per_year
from cryptota_core.metrics import compute_metrics
from cryptota_core.numbers import finite_or_none
from cryptota_core.research.optimize import BrokerSettings, objective_column, sweep_ranked
from cryptota_core.research.search import SearchSpec, parameter_sets
from cryptota_core.strategies import Strategy, StrategyParams, get_strategy
from cryptota_core.strategies.base import Fill
from cryptota_core.strategies.kernel import SignalKernel
from cryptota_core.trades import empty_trades

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
    in_sample_annual_log_return: float | None
    """The winner's IS total return as an annualised log return (:func:`annual_log_return`)."""
    out_sample_score: float | None
    out_sample_return: float | None
    """Total OOS return, after the exit at the window's end."""
    out_sample_annual_log_return: float | None
    out_sample_metrics: dict[str, float | None]
    out_sample_equity: pd.Series
    """The OOS equity: the cash at the close of the last IS bar, then every OOS close (the last
    one after the exit at the window's end)."""
    out_sample_trades: pd.DataFrame
    """The OOS trades, all closed (a position open at the end is closed there)."""


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
                    "in_sample_annual_log_return": w.in_sample_annual_log_return,
                    "out_sample_score": w.out_sample_score,
                    "out_sample_return": w.out_sample_return,
                    "out_sample_annual_log_return": w.out_sample_annual_log_return,
                    "out_sample_metrics": w.out_sample_metrics,
                }
                for w in self.windows
            ],
            "statistics": self.statistics,
        }


OUT_SAMPLE_METRICS: tuple[str, ...] = (
    "total_return",
    "sharpe_ratio",
    "max_drawdown",
    "trade_count",
    "total_commission",
)
"""The OOS metrics each window keeps (``compute_metrics`` names): ``total_commission``
includes the commission of the exit at the window's end."""


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
    periods = periods_per_year(interval)
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
        equity, trades = out_of_sample_run(
            frame,
            strategy,
            model,
            start=cut.oos_start,
            end=cut.oos_end,
            interval=interval,
            broker=broker,
        )
        metrics = compute_metrics(
            equity,
            trades,
            interval=interval,
            benchmark=frame["close"].iloc[cut.oos_start - 1 : cut.oos_end],
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
                in_sample_annual_log_return=annual_log_return(
                    figures["total_return"], cut.is_end - cut.is_start - 1, periods
                ),
                out_sample_score=finite_or_none(metrics.get(column)),
                out_sample_return=finite_or_none(metrics.get("total_return")),
                out_sample_annual_log_return=annual_log_return(
                    metrics.get("total_return"), len(equity) - 1, periods
                ),
                out_sample_metrics={
                    name: finite_or_none(metrics.get(name)) for name in OUT_SAMPLE_METRICS
                },
                out_sample_equity=equity,
                out_sample_trades=trades,
            )
        )
        # Each window starts at the close where the previous one ended (flat, after its exit).
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


def out_of_sample_run(
    frame: pd.DataFrame,
    strategy: Strategy,
    model: StrategyParams,
    *,
    start: int,
    end: int,
    interval: str,
    broker: BrokerSettings,
) -> tuple[pd.Series, pd.DataFrame]:
    """``model`` traded on the bars ``[start, end)`` of the prepared ``frame``, as the module
    docstring defines it: indicators on ``frame[:end]``, flat until the first decision at the
    close of bar ``start − 1``, flat again after the exit at the close of bar ``end − 1``.

    Returns the equity (one value per close of bars ``start − 1 .. end − 1``, the first the cash)
    and the trades (all closed). For the signal strategies this is the fast engine's long-only
    simulation of the window fed with the signals of the whole history (the engine's
    :func:`~cryptota_core.backtest.fast.run_fast_backtest` computes signals on the candles it is
    given only); the grid has no indicators, so it is the fast engine's own run from the close
    before the window. Nothing in ``frame[end:]`` is read.
    """
    if not 1 <= start < end <= len(frame):
        raise ValueError(f"out-of-sample bars [{start}, {end}) of {len(frame)} candles")
    if not supports(strategy):
        raise InvalidInputError(
            f"walk-forward trades out of sample on the fast engine, which cannot run "
            f"{strategy.name}"
        )
    first = start - 1
    window = frame.iloc[first:end]
    index = pd.DatetimeIndex(window.index)
    kernel = strategy.fast_kernel()
    if not isinstance(kernel, SignalKernel):  # the grid: no indicators to warm up
        run = run_fast_backtest(window, strategy, model, interval=interval, **broker.kwargs())
        equity, trades = run.equity.copy(), run.trades
    else:
        equity, trades = _long_run(frame.iloc[:end], strategy, model, first=first, broker=broker)
    return close_at_end(
        equity,
        trades,
        window.iloc[-1],
        end_time=index[-1] + interval_timedelta(interval),
        broker=broker,
    )


def _long_run(
    history: pd.DataFrame,
    strategy: Strategy,
    model: StrategyParams,
    *,
    first: int,
    broker: BrokerSettings,
) -> tuple[pd.Series, pd.DataFrame]:
    """The long-only simulation of ``history[first:]`` with the signals of all of ``history``
    (equity from the close of bar ``first``, the cash; trades, an open one marked there)."""
    kernel = strategy.fast_kernel()
    assert isinstance(kernel, SignalKernel)
    prices = prices_of(history)
    entry, exit_ = kernel.signals(model, prices)
    values, _, orders = simulate_long_nb(
        np.ascontiguousarray(prices.open[first:]),
        np.ascontiguousarray(prices.high[first:]),
        np.ascontiguousarray(prices.low[first:]),
        np.ascontiguousarray(prices.close[first:]),
        np.ascontiguousarray(entry[first:]),
        np.ascontiguousarray(exit_[first:]),
        max(0, strategy.warmup(model) - first),  # bars whose indicators are not defined yet
        float(broker.cash),
        float(broker.commission),
        float(broker.slippage),
        float(broker.stake),
    )
    filled = orders[orders["status"] == STATUS_FILLED]
    fills = [
        Fill(
            bar=int(order["fill_bar"]),
            size=float(order["size"] if order["side"] > 0 else -order["size"]),
            price=float(order["fill_price"]),
            commission=float(order["commission"]),
        )
        for order in filled
    ]
    index = pd.DatetimeIndex(history.index[first:])
    equity = pd.Series(values, index=index, name="equity", dtype="float64")
    return equity, trades_from_fills(fills, index, float(prices.close[-1]))


def close_at_end(
    equity: pd.Series,
    trades: pd.DataFrame,
    last: pd.Series,
    *,
    end_time: pd.Timestamp,
    broker: BrokerSettings,
) -> tuple[pd.Series, pd.DataFrame]:
    """``equity`` and ``trades`` with every position still open at the last close closed there.

    The engines mark an open position at the last close without exit costs; a walk-forward
    window must end flat (the next one starts flat), so the position is traded at that close
    as a market order: a sell at ``close × (1 − slippage)`` floored at the bar's ``low`` (a buy,
    closing a short, at ``close × (1 + slippage)`` capped at the ``high``) — the engine's
    slippage rule for market fills — paying ``|size| × price × commission``. The last equity
    value becomes ``value − size × (close − price) − commission``; each open trade row becomes
    closed at ``end_time`` (the last bar's close) with its share of that commission, as the
    engine's first-in first-out matching would split one closing fill.
    """
    is_open = trades["is_open"].to_numpy(dtype=bool)
    if not is_open.any():
        return equity, trades
    direction = np.where(trades["side"].to_numpy() == "long", 1.0, -1.0)
    position = float(np.sum((trades["size"].to_numpy() * direction)[is_open]))
    close, high, low = float(last["close"]), float(last["high"]), float(last["low"])
    slip = broker.slippage
    price = max(close * (1 - slip), low) if position > 0 else min(close * (1 + slip), high)
    fee = abs(position) * price * broker.commission
    equity = equity.copy()
    equity.iloc[-1] = float(equity.iloc[-1]) + position * (price - close) - fee
    trades = trades.copy()
    rows = trades.index[is_open]
    sizes = trades.loc[rows, "size"]
    commission = trades.loc[rows, "commission"] + sizes * price * broker.commission
    pnl = sizes * (price - trades.loc[rows, "entry_price"]) * direction[is_open] - commission
    trades.loc[rows, "exit_time"] = end_time
    trades.loc[rows, "exit_price"] = price
    trades.loc[rows, "commission"] = commission
    trades.loc[rows, "pnl"] = pnl
    trades.loc[rows, "pnl_pct"] = pnl / (sizes * trades.loc[rows, "entry_price"])
    trades.loc[rows, "bars"] = trades.loc[rows, "bars"] + 1  # held through the last bar's close
    trades.loc[rows, "is_open"] = False
    return equity, trades


def annual_log_return(total_return: float | None, returns: int, periods: float) -> float | None:
    """``ln(1 + total_return) × periods / returns``: the mean log growth per bar over ``returns``
    bar-to-bar returns, times the bars in a year. Unlike a CAGR it scales linearly with the
    window, so a one-day window's figure stays on the scale of its return instead of being
    compounded 365 times. None when undefined (no return, or the equity reached zero)."""
    value = finite_or_none(total_return)
    if value is None or returns < 1 or value <= -1.0:
        return None
    return finite_or_none(math.log1p(value) * periods / returns)


def walk_forward_efficiency(windows: Sequence[WindowResult]) -> tuple[float | None, int]:
    """Walk-forward efficiency and the number of windows it is computed over.

    ``WFE = median over windows w of OOS_w / IS_w``, with ``OOS_w`` and ``IS_w`` window ``w``'s
    annualised log returns (:func:`annual_log_return`) of the chosen set out of and in sample:
    Pardo's efficiency (annualised OOS return ÷ annualised IS return) on log returns, per window
    so each ratio compares the same window's two sides. A window counts only when both sides
    are defined and its IS return is positive (a ratio to an IS loss or to zero says nothing
    about how much of an edge survived); the median keeps one window with a tiny IS return from
    dominating. None when no window counts."""
    ratios = [
        w.out_sample_annual_log_return / w.in_sample_annual_log_return
        for w in windows
        if w.out_sample_annual_log_return is not None
        and w.in_sample_annual_log_return is not None
        and w.in_sample_annual_log_return > 0.0
    ]
    if not ratios:
        return None, 0
    return finite_or_none(float(np.median(ratios))), len(ratios)


def walk_forward_statistics(
    windows: list[WindowResult], stitched: pd.Series, interval: str
) -> dict[str, Any]:
    """Efficiency, stitched out-of-sample performance and parameter stability (JSON-ready)."""
    stitched_metrics = compute_metrics(stitched, empty_trades(), interval=interval)
    efficiency, counted = walk_forward_efficiency(windows)
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
        "walk_forward_efficiency_window_count": counted,
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
