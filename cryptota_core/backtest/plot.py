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
from cryptota_core.charts import ChartSubject, figure_png, sparkline_png


def plot_backtest(result: BacktestResult, path: str | Path, *, subject: ChartSubject) -> Path:
    """Write ``result`` as a PNG to ``path`` (parent directories are created) and return it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(backtest_png(result, subject=subject))
    return out


def backtest_preview_png(result: BacktestResult) -> bytes:
    """The equity curve over buy and hold as an inline preview (:mod:`cryptota_core.charts`)."""
    benchmark = result.benchmark.reindex(result.equity.index)
    return sparkline_png(result.equity.to_numpy(), benchmark.to_numpy())


def backtest_png(result: BacktestResult, *, subject: ChartSubject) -> bytes:
    """The picture of ``result`` as PNG bytes."""
    return figure_png(backtest_figure(result, subject=subject))


def backtest_figure(result: BacktestResult, *, subject: ChartSubject) -> Figure:
    """The picture of ``result``.

    Top panel: strategy equity and the buy-and-hold benchmark, with entries (▲) and exits (▼)
    marked at the equity of their fill bars. Bottom panel: drawdown of the equity from its
    running peak, in percent. The title names the candles (:meth:`ChartSubject.caption`)."""
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
    top.set_ylabel("equity (quote currency)")
    top.set_title(
        f"{result.slug} · {subject.caption(result.start, result.end)}\n"
        f"{result.bars:,} candles · final equity {result.equity_final:,.2f} "
        f"from {result.cash:,.2f} · {result.engine} engine",
        fontsize="medium",
    )
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)

    bottom.fill_between(x, drawdown.to_numpy(), 0.0, color="tab:red", alpha=0.3, lw=0)
    bottom.set_ylabel("drawdown %")
    bottom.set_xlabel("time (UTC)")
    bottom.grid(alpha=0.3)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(bottom.xaxis.get_major_locator()))
    return fig


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
