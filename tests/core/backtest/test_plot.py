"""The backtest plot: a real PNG, drawn without a GUI backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.plot import plot_backtest
from tests.core.backtest.candles_fixture import make_candles

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("name", "params"), [("rsi", {}), ("grid", {}), ("rsi", {"period": 2})])
def test_plot_writes_a_non_empty_png(tmp_path: Path, name: str, params: dict[str, int]) -> None:
    backend = matplotlib.get_backend()
    result = run_backtest(make_candles(600), name, params, interval="1h")
    out = plot_backtest(result, tmp_path / "plots" / f"{result.slug}.png")
    assert out == tmp_path / "plots" / f"{result.slug}.png"
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000
    assert matplotlib.get_backend() == backend  # no global backend switch


def test_plot_without_trades(tmp_path: Path) -> None:
    result = run_backtest(make_candles(100), "rsi", {"period": 50}, interval="1h")
    assert result.trades.empty
    out = plot_backtest(result, str(tmp_path / "flat.png"))
    assert out.read_bytes().startswith(PNG_SIGNATURE)
