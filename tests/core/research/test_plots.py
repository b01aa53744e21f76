"""The research pictures: real PNGs whose titles name the candles, a heatmap that says how it
folded the other parameters, walk-forward equity beside buy and hold with each window's choice,
and previews small enough for the Dagster UI to show inline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptota_core.charts import INLINE_MARKDOWN_LIMIT, ChartSubject, png_data_uri
from cryptota_core.research.optimize import optimize
from cryptota_core.research.plots import (
    buy_and_hold,
    has_heatmap,
    heatmap_figure,
    heatmap_note,
    objective_preview_png,
    plot_heatmap,
    plot_walk_forward,
    walk_forward_figure,
    walk_forward_preview_png,
)
from cryptota_core.research.search import SearchSpec
from cryptota_core.research.walk_forward import walk_forward
from tests.core.research.test_optimize import RSI_GRID, random_walk
from tests.core.research.test_walk_forward import planted

PNG = b"\x89PNG\r\n\x1a\n"
SUBJECT = ChartSubject("BTCUSDT", "1h", "SYNTHETIC candles")


def _inline(png: bytes) -> str:
    return f"![preview]({png_data_uri(png)})"


def test_heatmap_names_its_candles_axes_and_what_a_cell_is(tmp_path: Path) -> None:
    candles = random_walk(2_000, 1)
    result = optimize(candles, SearchSpec(strategy="rsi", grid=RSI_GRID), interval="1h", recheck=0)
    assert has_heatmap(result)
    figure = heatmap_figure(result, "overbought", "period", subject=SUBJECT)
    (ax, _colorbar) = figure.axes
    title = ax.get_title()
    assert "rsi: sharpe_ratio over overbought × period (48 sets)" in title
    assert f"BTCUSDT 1h · {candles.index[0]:%Y-%m-%d %H:%M} .. " in title
    assert "SYNTHETIC candles" in title
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("overbought", "period")
    note = " ".join(" ".join(text.get_text().split()) for text in figure.texts)
    assert "each cell: the best (max) sharpe_ratio over oversold" in note
    assert "white: no set searched there, fewer than 5 trades (--min-trades), or" in note
    # cells show only the sets that competed: the best cell is the winner's score
    cells = result.heatmap_frame("overbought", "period").to_numpy(dtype=np.float64)
    competed = result.sweep.figures[result.sweep.figures["trade_count"] >= 5]
    assert np.nanmax(cells) == competed["sharpe_ratio"].max() == result.best_score
    # the note is laid out inside the figure, clear of the axis label (it once ran off the
    # right edge, across the x label)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    (text,) = figure.texts
    box = text.get_window_extent(renderer)
    assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1 and box.y0 >= figure.bbox.y0
    assert not box.overlaps(ax.xaxis.label.get_window_extent(renderer))
    png = plot_heatmap(result, tmp_path / "h.png", "overbought", "period", subject=SUBJECT)
    assert png.read_bytes().startswith(PNG)

    preview = objective_preview_png(result)
    assert preview.startswith(PNG) and len(_inline(preview)) < INLINE_MARKDOWN_LIMIT


def test_heatmap_of_two_parameters_folds_nothing() -> None:
    grid = {"period": [7, 14], "oversold": [20, 30], "overbought": [70]}
    result = optimize(
        random_walk(1_500, 2), SearchSpec(strategy="rsi", grid=grid), interval="1h", recheck=0
    )
    assert has_heatmap(result)
    assert heatmap_note(result).startswith("each cell: one parameter set;")
    one = optimize(
        random_walk(1_500, 2),
        SearchSpec(strategy="rsi", grid={"period": [7, 14], "oversold": [30], "overbought": [70]}),
        interval="1h",
        recheck=0,
    )
    assert not has_heatmap(one)  # one varied parameter: a line, not a map


def test_walk_forward_picture_has_buy_and_hold_and_each_windows_choice(tmp_path: Path) -> None:
    candles = planted(3_000)
    result = walk_forward(
        candles, SearchSpec(strategy="rsi", grid=RSI_GRID), interval="1h", windows=3
    )
    close = candles["close"]
    hold = buy_and_hold(result, close)
    equity = result.oos_equity
    assert hold.iloc[0] == pytest.approx(equity.iloc[0])
    assert hold.iloc[-1] == pytest.approx(
        equity.iloc[0] * close[equity.index[-1]] / close[equity.index[0]]
    )

    figure = walk_forward_figure(result, subject=SUBJECT, close=close)
    (ax,) = figure.axes
    assert [line.get_label() for line in ax.get_lines()][:2] == [
        "out-of-sample equity",
        "buy and hold",
    ]
    labels = [text.get_text() for text in ax.texts]
    assert labels == [w.best_slug.removeprefix("rsi-") for w in result.windows]
    assert "3 windows (rolling)" in ax.get_title() and "SYNTHETIC candles" in ax.get_title()
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("equity (quote currency)", "time (UTC)")
    png = plot_walk_forward(result, tmp_path / "wf.png", subject=SUBJECT, close=close)
    assert png.read_bytes().startswith(PNG)

    preview = walk_forward_preview_png(result, close)
    assert preview.startswith(PNG) and len(_inline(preview)) < INLINE_MARKDOWN_LIMIT


def test_previews_stay_inline_on_long_and_degenerate_series() -> None:
    from cryptota_core.charts import heatmap_preview_png, sparkline_png

    rng = np.random.default_rng(3)
    long = np.cumsum(rng.normal(size=525_600))
    noisy = sparkline_png(long, np.cumsum(rng.normal(size=525_600)))
    assert len(_inline(noisy)) < INLINE_MARKDOWN_LIMIT
    for values in (np.full(100, 7.0), np.array([np.nan, 1.0]), np.array([])):
        assert sparkline_png(values).startswith(PNG)
    grid = rng.normal(size=(10, 10))
    grid[0, 0] = np.nan
    assert len(_inline(heatmap_preview_png(grid))) < INLINE_MARKDOWN_LIMIT
    assert heatmap_preview_png(np.full((2, 3), np.nan)).startswith(PNG)
    assert heatmap_preview_png(np.empty((0, 0))).startswith(PNG)  # no set had an objective


def test_subject_of_store_and_csv_candles() -> None:
    from cryptota_core.app.candles import CandleInput
    from cryptota_core.market.frame import SeriesKey

    frame = pd.DataFrame()
    stored = CandleInput(
        frame, SeriesKey(exchange="binance", symbol="ETHUSDT", interval="1m"), "1m", "f", "store"
    )
    assert ChartSubject.of(stored) == ChartSubject("ETHUSDT", "1m", "Binance candles")
    csv = CandleInput(frame, None, "1h", "f", "csv:BTCUSDT-1h-2024-01.csv")
    subject = ChartSubject.of(csv)
    assert subject == ChartSubject(None, "1h", "CSV BTCUSDT-1h-2024-01.csv")
    start = pd.Timestamp("2024-01-01", tz="UTC")
    assert subject.caption(start, start + pd.Timedelta(hours=5)) == (
        "1h · 2024-01-01 00:00 .. 2024-01-01 05:00 UTC · CSV BTCUSDT-1h-2024-01.csv"
    )
