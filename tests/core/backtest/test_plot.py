"""The backtest plot: a real PNG, drawn without a GUI backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.plot import backtest_figure, backtest_preview_png, plot_backtest
from cryptota_core.charts import INLINE_MARKDOWN_LIMIT, ChartSubject, png_data_uri
from tests.core.backtest.candles_fixture import make_candles

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SUBJECT = ChartSubject("BTCUSDT", "1h", "SYNTHETIC candles")


@pytest.mark.parametrize(("name", "params"), [("rsi", {}), ("grid", {}), ("rsi", {"period": 2})])
def test_plot_writes_a_non_empty_png(tmp_path: Path, name: str, params: dict[str, int]) -> None:
    backend = matplotlib.get_backend()
    result = run_backtest(make_candles(600), name, params, interval="1h")
    out = plot_backtest(result, tmp_path / "plots" / f"{result.slug}.png", subject=SUBJECT)
    assert out == tmp_path / "plots" / f"{result.slug}.png"
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000
    assert matplotlib.get_backend() == backend  # no global backend switch


def test_plot_without_trades(tmp_path: Path) -> None:
    result = run_backtest(make_candles(100), "rsi", {"period": 50}, interval="1h")
    assert result.trades.empty
    out = plot_backtest(result, str(tmp_path / "flat.png"), subject=SUBJECT)
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_title_names_the_candles_and_axes_are_labelled() -> None:
    result = run_backtest(make_candles(300), "rsi", {}, interval="1h")
    top, bottom = backtest_figure(result, subject=SUBJECT).axes
    title = top.get_title()
    assert title.startswith(f"{result.slug} · BTCUSDT 1h · {result.start:%Y-%m-%d %H:%M} .. ")
    assert "UTC · SYNTHETIC candles" in title and f"{result.bars:,} candles" in title
    assert top.get_ylabel() == "equity (quote currency)"
    assert (bottom.get_ylabel(), bottom.get_xlabel()) == ("drawdown %", "time (UTC)")
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert legend[:2] == [result.slug, "buy and hold"]


def test_preview_is_small_enough_to_show_inline() -> None:
    result = run_backtest(make_candles(600), "rsi", {}, interval="1h")
    preview = backtest_preview_png(result)
    assert preview.startswith(PNG_SIGNATURE)
    assert len(f"![equity]({png_data_uri(preview)})") < INLINE_MARKDOWN_LIMIT
