"""The `cryptota` command: ingest, and one clear line for every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cryptota_core.cli import main
from cryptota_core.market.frame import SeriesKey
from cryptota_core.storage.candle_store import CandleStore

JAN = pd.Timestamp("2024-01-01", tz="UTC")


def _count(url: str, symbol: str, interval: str = "1m") -> int:
    store = CandleStore.from_url(url)
    key = SeriesKey(exchange="synthetic", symbol=symbol, interval=interval)
    return store.count(
        key, pd.Timestamp("2000-01-01", tz="UTC"), pd.Timestamp("2100-01-01", tz="UTC")
    )


def test_ingest_synthetic_prints_summary_and_is_idempotent(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", database_url)
    args = [
        "ingest",
        "--source",
        "synthetic",
        "--symbols",
        "BTCUSDT,ethusdt",
        "--interval",
        "1m",
        "--start",
        "2024-01-30",
        "--end",
        "2024-02-02",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "BTCUSDT" in captured.out and "ETHUSDT" in captured.out
    assert "4,320" in captured.out
    assert "SYNTHETIC" in captured.err
    assert main(args) == 0
    assert _count(database_url, "BTCUSDT") == 3 * 1440
    assert _count(database_url, "ETHUSDT") == 3 * 1440


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "7m"], "unknown interval '7m'"),
        (["--start", "2024-02-01", "--end", "2024-01-01"], "is not after --start"),
        (["--start", "yesterday-ish"], "cannot read 'yesterday-ish' as a date"),
        (["--symbols", "BTC-USDT"], "invalid symbol 'BTC-USDT'"),
        (["--source", "kraken"], "Invalid value for '--source'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    args: list[str],
    message: str,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", sqlite_url)
    base = {
        "--source": "synthetic",
        "--symbols": "BTCUSDT",
        "--interval": "1m",
        "--start": "2024-01-01",
        "--end": "2024-01-02",
    }
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["ingest", *[item for pair in base.items() for item in pair]]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert _count(sqlite_url, "BTCUSDT") == 0


def test_unreachable_database_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", "postgresql://u:topsecret@127.0.0.1:1/db")
    assert (
        main(["ingest", "--source", "synthetic", "--start", "2024-01-01", "--end", "2024-01-02"])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot reach the database")
    assert "topsecret" not in err
    assert len(err.splitlines()) == 1


def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRYPTOTA_INTERVAL", "2w")
    assert main(["ingest", "--start", "2024-01-01", "--end", "2024-01-02"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: CRYPTOTA_INTERVAL='2w' is invalid")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("damage", ["checksum", "csv"])
def test_archive_ingest_with_a_bad_file_is_one_line_and_keeps_earlier_months(
    damage: str,
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cryptota_core.market.sources.synthetic import generate_candles
    from tests.core.market.archive_fixture import corrupt, monthly_path, write_archive

    frame = generate_candles("BTCUSDT", "1h", JAN, pd.Timestamp("2024-03-01", tz="UTC"), seed=4)
    url = write_archive(tmp_path / "archive", frame, "BTCUSDT", "1h")
    corrupt(monthly_path(tmp_path / "archive", "BTCUSDT", "1h", "2024-02"), damage)  # type: ignore[arg-type]
    monkeypatch.setenv("CRYPTOTA_ARCHIVE_URL", url)
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", sqlite_url)
    args = ["ingest", "--source", "archive", "--symbols", "BTCUSDT", "--interval", "1h",
            "--start", "2024-01-01", "--end", "2024-03-01"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "BTCUSDT-1h-2024-02.zip" in err
    store = CandleStore.from_url(sqlite_url)
    key = SeriesKey(exchange="binance", symbol="BTCUSDT", interval="1h")
    assert store.count(key, JAN, pd.Timestamp("2024-02-01", tz="UTC")) == 31 * 24
    assert (
        store.count(key, pd.Timestamp("2024-02-01", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC"))
        == 0
    )


def test_piped_output_is_wide_enough_for_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout under pytest is no terminal: ``COLUMNS`` decides, else a width at which the demo's
    leaderboard keeps its headers (rich's fallback of 80 turned each into an ellipsis)."""
    from cryptota_core.cli.common import PIPED_WIDTH, _out_width

    monkeypatch.delenv("COLUMNS", raising=False)
    assert _out_width() == PIPED_WIDTH >= 200
    monkeypatch.setenv("COLUMNS", "132")
    assert _out_width() == 132
    monkeypatch.setenv("COLUMNS", "wide")
    assert _out_width() == PIPED_WIDTH
