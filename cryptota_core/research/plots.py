"""PNG pictures of research results: the objective heatmap of an optimisation and the stitched
out-of-sample equity of a walk-forward.

Drawn on bare Agg figures, as :mod:`cryptota_core.backtest.plot` is, so they are safe in Dagster
workers and headless CI.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cryptota_core.research.optimize import OptimizationResult
from cryptota_core.research.walk_forward import WalkForwardResult


def plot_heatmap(
    result: OptimizationResult, path: str | Path, x: str | None = None, y: str | None = None
) -> Path:
    """The objective over two parameters (best over the others), the winner circled."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = result.heatmap_frame(x, y)
    fig = Figure(figsize=(max(5.0, 0.6 * frame.shape[1] + 3), max(4.0, 0.45 * frame.shape[0] + 2)))
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
            )
    fig.colorbar(image, ax=ax, label=result.objective)
    ax.set_title(f"{result.strategy}: {result.objective} ({result.combinations:,} sets)")
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out


def plot_walk_forward(result: WalkForwardResult, path: str | Path) -> Path:
    """The stitched out-of-sample equity, window boundaries dashed."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    equity = result.oos_equity
    x = pd.DatetimeIndex(equity.index).tz_convert("UTC").tz_localize(None)
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(x, equity.to_numpy(), color="tab:blue", lw=1.2, label="out-of-sample equity")
    for window in result.windows[1:]:
        ax.axvline(
            float(
                mdates.date2num(
                    pd.Timestamp(window.out_sample_start).tz_convert("UTC").tz_localize(None)
                )
            ),
            color="grey",
            ls="--",
            lw=0.8,
        )
    ax.set_title(
        f"{result.strategy} walk-forward: {len(result.windows)} windows "
        f"({'anchored' if result.anchored else 'rolling'})"
    )
    ax.set_ylabel("equity")
    ax.legend(loc="upper left")
    fig.savefig(out, format="png")
    return out


def _label(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
