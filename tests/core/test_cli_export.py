"""`cryptota export`: stored candles out as the Binance kline CSV that `--csv` reads back, so a
window can be shared or run on another tool exactly as the store holds it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cryptota_core.cli import main
from cryptota_core.market.binance_csv import read_kline_csv
from cryptota_core.market.frame import SeriesKey
from cryptota_core.settings import load_settings
from cryptota_core.storage.candle_store import CandleStore

START, END = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-08", tz="UTC")
WINDOW = ["--symbol", "BTCUSDT", "--interval", "1h", "--start", "2024-01-01", "--end", "2024-01-08"]


@pytest.fixture
def stored() -> pd.DataFrame:
    """A week of synthetic BTCUSDT candles in the default store, read back at 1h."""
    ingest = ["ingest", "--source", "synthetic", "--symbols", "BTCUSDT"]
    assert main([*ingest, "--start", "2024-01-01", "--end", "2024-01-08"]) == 0
    store = CandleStore.from_url(load_settings().resolved_database_url)
    return store.read(SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1h"), START, END)


def test_export_writes_the_stored_candles_as_a_kline_csv_that_reads_back_equal(
    stored: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "BTCUSDT-1h.csv"
    capsys.readouterr()
    assert main(["export", *WINDOW, "--csv", str(path)]) == 0
    assert "wrote 168 1h candles of synthetic:BTCUSDT:1h" in capsys.readouterr().out
    back = read_kline_csv(path)
    assert len(back) == len(stored) == 168
    pd.testing.assert_frame_equal(
        back[["open", "high", "low", "close", "volume"]],
        stored[["open", "high", "low", "close", "volume"]],
        check_freq=False,
    )
    # What --csv reads: the same backtest as on the store.
    assert main(["backtest", "--strategy", "rsi", "--csv", str(path), "--json"]) == 0


def test_export_refuses_a_window_the_store_does_not_cover_and_writes_nothing(
    stored: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out.csv"
    capsys.readouterr()
    longer = [*WINDOW[:-1], "2024-02-01"]
    assert main(["export", *longer, "--csv", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: BTCUSDT 1h (synthetic): the store has 168 of the 744 candles")
    assert "--allow-partial" in err and not path.exists()
    assert main(["export", *longer, "--allow-partial", "--csv", str(path)]) == 0
    assert len(read_kline_csv(path)) == 168


def test_export_to_a_path_it_cannot_write_is_one_line(
    stored: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["export", *WINDOW, "--csv", "/nonexistent-dir/out.csv"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "error: cannot write --csv /nonexistent-dir/out.csv: No such file or directory"
    )
    assert "Traceback" not in "\n".join(err)
