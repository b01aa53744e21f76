"""PNG pictures of research results: the objective heatmap of an optimisation and the stitched
out-of-sample equity of a walk-forward, each with its inline preview.

Drawn on bare Agg figures, as :mod:`cryptota_core.backtest.plot` is, so they are safe in Dagster
workers and headless CI. Titles start with the candles' caption
(:meth:`~cryptota_core.charts.ChartSubject.caption`).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cryptota_core.charts import ChartSubject, figure_png, heatmap_preview_png, sparkline_png
from cryptota_core.research.optimize import OptimizationResult, heatmap_axes
from cryptota_core.research.walk_forward import WalkForwardResult

HEATMAP_COLLAPSE = "max"
"""How a heatmap cell folds the parameters it does not show: the best (largest) objective
among the sets that share the cell's two values (what :meth:`OptimizationResult.heatmap_frame`
computes)."""


def has_heatmap(result: OptimizationResult) -> bool:
    """Whether there is a map to draw: the search varied at least two parameters (a heatmap of
    fewer is one line) and some set has a defined objective (else every cell is empty)."""
    varied = sum(len(values) > 1 for values in result.spec.grid.values()) >= 2
    return varied and not result.heatmap_frame().empty


def plot_heatmap(
    result: OptimizationResult,
    path: str | Path,
    x: str | None = None,
    y: str | None = None,
    *,
    subject: ChartSubject,
) -> Path:
    """Write the heatmap of ``result`` as a PNG to ``path`` and return it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(figure_png(heatmap_figure(result, x, y, subject=subject)))
    return out


def heatmap_figure(
    result: OptimizationResult,
    x: str | None = None,
    y: str | None = None,
    *,
    subject: ChartSubject,
) -> Figure:
    """The objective over two parameters (the best over the others), the winner circled, and
    a note saying how the other parameters were folded and what a white cell means."""
    frame = result.heatmap_frame(x, y)
    fig = Figure(
        figsize=(max(6.5, 0.6 * frame.shape[1] + 3), max(4.5, 0.45 * frame.shape[0] + 2.5)),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = frame.to_numpy(dtype=np.float64)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(frame.shape[1]), [_label(v) for v in frame.columns])
    ax.set_yticks(range(frame.shape[0]), [_label(v) for v in frame.index])
    ax.set_xlabel(str(frame.columns.name))
    ax.set_ylabel(str(frame.index.name))
    best = result.best_params
    if frame.columns.name in best and frame.index.name in best:
        cols = list(frame.columns)
        rows = list(frame.index)
        if best[frame.columns.name] in cols and best[frame.index.name] in rows:
            ax.scatter(
                [cols.index(best[frame.columns.name])],
                [rows.index(best[frame.index.name])],
                s=160,
                facecolors="none",
                edgecolors="red",
                linewidths=2,
                label=f"winner {result.best_slug}",
            )
            ax.legend(loc="upper right", fontsize="small")
    fig.colorbar(image, ax=ax, label=result.objective)
    ax.set_title(
        f"{result.strategy}: {result.objective} over {frame.columns.name} × {frame.index.name} "
        f"({result.combinations:,} sets)\n"
        f"{subject.caption(result.sweep.candle_start, result.sweep.candle_end)}",
        fontsize="medium",
    )
    # A figure-level x label is laid out by the constrained layout (a free fig.text overlapped
    # the axis label and ran off the right edge); wrapped to the figure's width.
    width = int(fig.get_figwidth() * NOTE_CHARS_PER_INCH)
    fig.supxlabel(
        textwrap.fill(heatmap_note(result, x, y), width),
        fontsize="small",
        color="dimgray",
        x=0.01,
        ha="left",
    )
    return fig


NOTE_CHARS_PER_INCH = 11
"""About how many characters of matplotlib's "small" font fit an inch: where a note wraps."""


def heatmap_note(result: OptimizationResult, x: str | None = None, y: str | None = None) -> str:
    """What a cell of the heatmap is, and what a white one means."""
    x, y = heatmap_axes(result.spec.grid, x, y)
    folded = [name for name, values in result.spec.grid.items() if name not in (x, y)]
    varied = [name for name in folded if len(result.spec.grid[name]) > 1]
    cell = (
        f"each cell: the best ({HEATMAP_COLLAPSE}) {result.objective} over {', '.join(varied)}"
        if varied
        else "each cell: one parameter set"
    )
    fewer = (
        f", fewer than {result.settings.min_trades} trades (--min-trades),"
        if result.settings.min_trades
        else ""
    )
    return (
        f"{cell}; white: no set searched there{fewer} or {result.objective} undefined "
        "(no trades, or returns without variance)"
    )


def objective_preview_png(result: OptimizationResult) -> bytes:
    """The heatmap as an inline preview (:mod:`cryptota_core.charts`)."""
    return heatmap_preview_png(result.heatmap_frame().to_numpy(dtype=np.float64))


def plot_walk_forward(
    result: WalkForwardResult, path: str | Path, *, subject: ChartSubject, close: pd.Series
) -> Path:
    """Write the walk-forward picture of ``result`` as a PNG to ``path`` and return it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(figure_png(walk_forward_figure(result, subject=subject, close=close)))
    return out


def buy_and_hold(result: WalkForwardResult, close: pd.Series) -> pd.Series:
    """Buying with the out-of-sample equity's first value at the close of its first candle and
    holding to the end: the benchmark the stitched equity is read against."""
    equity = result.oos_equity
    prices = close.reindex(equity.index)
    return pd.Series(
        float(equity.iloc[0]) * prices / float(prices.iloc[0]), index=equity.index, name="hold"
    )


def walk_forward_figure(
    result: WalkForwardResult, *, subject: ChartSubject, close: pd.Series
) -> Figure:
    """The stitched out-of-sample equity beside buy and hold over the same candles, window
    boundaries dashed, each window labelled with the parameters chosen in sample for it."""
    equity = result.oos_equity
    x = pd.DatetimeIndex(equity.index).tz_convert("UTC").tz_localize(None)
    fig = Figure(figsize=(11, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(x, equity.to_numpy(), color="tab:blue", lw=1.2, label="out-of-sample equity")
    ax.plot(
        x,
        buy_and_hold(result, close).to_numpy(),
        color="tab:gray",
        lw=1.0,
        alpha=0.8,
        label="buy and hold",
    )
    prefix = f"{result.strategy}-"
    for window in result.windows:
        start = float(
            mdates.date2num(
                pd.Timestamp(window.out_sample_start).tz_convert("UTC").tz_localize(None)
            )
        )
        if window.window_no > 0:
            ax.axvline(start, color="grey", ls="--", lw=0.8)
        ax.annotate(
            window.best_slug.removeprefix(prefix),
            xy=(start, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -4),
            textcoords="offset points",
            rotation=90,
            va="top",
            fontsize="x-small",
            color="dimgray",
        )
    ax.set_title(
        f"{result.strategy} walk-forward: {len(result.windows)} windows "
        f"({'anchored' if result.anchored else 'rolling'}), each labelled with the parameters "
        f"chosen in sample by {result.objective}\n"
        f"{subject.caption(equity.index[0], equity.index[-1])}",
        fontsize="medium",
    )
    ax.set_ylabel("equity (quote currency)")
    ax.set_xlabel("time (UTC)")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    return fig


def walk_forward_preview_png(result: WalkForwardResult, close: pd.Series) -> bytes:
    """The stitched equity over buy and hold as an inline preview."""
    return sparkline_png(result.oos_equity.to_numpy(), buy_and_hold(result, close).to_numpy())


def _label(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
