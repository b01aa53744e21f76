"""A PNG picture of one backtest: equity against buy-and-hold, drawdown, entries and exits.

Drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``: no GUI backend is ever selected, no global figure state is touched, so it is safe in
Dagster workers, threads and headless CI.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cryptota_core.backtest.result import BacktestResult


def plot_backtest(result: BacktestResult, path: str | Path) -> Path:
    """Write ``result`` as a PNG to ``path`` (parent directories are created) and return it.

    Top panel: strategy equity and the buy-and-hold benchmark, with entries (▲) and exits (▼)
    marked at the equity of their fill bars. Bottom panel: drawdown of the equity from its
    running peak, in percent."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)

    equity = result.equity
    drawdown = (equity / equity.cummax() - 1.0) * 100.0
    x = pd.DatetimeIndex(equity.index).tz_convert("UTC").tz_localize(None)

    fig = Figure(figsize=(11, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(x, equity.to_numpy(), color="tab:blue", lw=1.2, label=f"{result.slug}")
    top.plot(
        x,
        result.benchmark.reindex(equity.index).to_numpy(),
        color="tab:gray",
        lw=1.0,
        alpha=0.8,
        label="buy and hold",
    )
    _mark(top, equity, result.trades["entry_time"], "^", "tab:green", "entry")
    closed = result.trades.loc[~result.trades["is_open"].astype(bool), "exit_time"]
    _mark(top, equity, closed, "v", "tab:red", "exit")
    top.set_ylabel("equity")
    top.set_title(
        f"{result.strategy} {result.slug} · {result.interval} · {result.bars} candles · "
        f"final {result.equity_final:,.2f}"
    )
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)

    bottom.fill_between(x, drawdown.to_numpy(), 0.0, color="tab:red", alpha=0.3, lw=0)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(bottom.xaxis.get_major_locator()))

    fig.savefig(out, format="png")
    return out


def _mark(
    ax: Axes, equity: pd.Series, times: pd.Series, marker: str, color: str, label: str
) -> None:
    """Scatter fill times on the equity line (the equity at the close of the fill bar)."""
    when = pd.DatetimeIndex(times.dropna()).unique()
    when = when[when.isin(equity.index)]
    if len(when) == 0:
        return
    y = equity.reindex(when).to_numpy()
    x = when.tz_convert("UTC").tz_localize(None)
    ax.scatter(x, y, marker=marker, color=color, s=28, zorder=3, label=label)
