"""`cryptota backtest`: the JSON contract of DESIGN §2 and one clear line for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest

from cryptota_core.cli import main
from cryptota_core.market.binance_csv import write_kline_csv
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.strategies import register, unregister
from cryptota_core.strategies.rsi import Rsi

RSI = '{"period":14,"oversold":30,"overbought":70}'


@pytest.fixture(scope="module")
def kline_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = SyntheticSource(seed=11).fetch(
        "BTCUSDT", "1h", pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-04-01", tz="UTC")
    )
    path = tmp_path_factory.mktemp("csv") / "BTCUSDT-1h-2024-Q1.csv"
    write_kline_csv(frame, path, interval="1h")
    return path


def test_backtest_csv_json_contract(kline_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["backtest", "--csv", str(kline_csv), "--strategy", "rsi", "--params", RSI, "--json"])
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["strategy"] == "rsi"
    assert payload["params"] == {"period": 14, "oversold": 30, "overbought": 70}
    assert payload["engine"] == "backtrader"
    assert payload["bars"] == 91 * 24
    assert len(payload["metrics"]) >= 30
    assert all(v is None or isinstance(v, int | float) for v in payload["metrics"].values())
    assert payload["trades"], "the fixture data should produce RSI trades"
    trade = payload["trades"][0]
    for field in (
        "entry_time",
        "exit_time",
        "side",
        "size",
        "entry_price",
        "exit_price",
        "pnl",
        "pnl_pct",
        "commission",
    ):
        assert field in trade
    assert trade["entry_time"].endswith("Z")
    assert pd.Timestamp(trade["entry_time"]).tzinfo is not None
    assert payload["equity_final"] == pytest.approx(
        10_000 * (1 + payload["metrics"]["total_return"]), rel=1e-12
    )


def test_backtest_store_matches_csv(
    kline_csv: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same candles give the same result whether read from a CSV or from the store."""
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", sqlite_url)
    assert (
        main(
            [
                "ingest",
                "--source",
                "synthetic",
                "--symbols",
                "BTCUSDT",
                "--interval",
                "1h",
                "--start",
                "2024-01-01",
                "--end",
                "2024-04-01",
            ]
        )
        == 0
    )
    # Re-ingesting the window from another seed must replace every candle, not mix the two.
    monkeypatch.setenv("CRYPTOTA_SYNTHETIC_SEED", "11")
    assert (
        main(
            [
                "ingest",
                "--source",
                "synthetic",
                "--symbols",
                "BTCUSDT",
                "--interval",
                "1h",
                "--start",
                "2024-01-01",
                "--end",
                "2024-04-01",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "backtest",
                "--symbol",
                "BTCUSDT",
                "--interval",
                "1h",
                "--start",
                "2024-01-01",
                "--end",
                "2024-04-01",
                "--strategy",
                "rsi",
                "--params",
                RSI,
                "--json",
            ]
        )
        == 0
    )
    from_store = json.loads(capsys.readouterr().out)
    assert (
        main(["backtest", "--csv", str(kline_csv), "--strategy", "rsi", "--params", RSI, "--json"])
        == 0
    )
    from_csv = json.loads(capsys.readouterr().out)
    assert from_store["trades"] == from_csv["trades"]
    assert from_store["equity_final"] == from_csv["equity_final"]


def test_backtest_writes_plot(kline_csv: Path, tmp_path: Path) -> None:
    plot = tmp_path / "equity.png"
    assert (
        main(
            [
                "backtest",
                "--csv",
                str(kline_csv),
                "--strategy",
                "rsi",
                "--params",
                RSI,
                "--plot",
                str(plot),
            ]
        )
        == 0
    )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--strategy", "rsi", "--params", '{"period":14,"oversold":70,"overbought":70}'],
            "oversold (70) must be below overbought (70)",
        ),
        (["--strategy", "rsi", "--params", '{"period":0}'], "period"),
        (["--strategy", "macd", "--params", "{}"], "unknown strategy 'macd'"),
        (["--strategy", "rsi", "--params", '{"oversould":20}'], "did you mean 'oversold'?"),
        (["--strategy", "rsi", "--params", "{period:14"], "JSON"),
    ],
)
def test_bad_params_are_one_line(
    extra: list[str], message: str, kline_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", "--csv", str(kline_csv), *extra, "--json"]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err


def test_missing_and_malformed_csv_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", "--csv", str(tmp_path / "nope.csv"), "--strategy", "rsi"]) != 0
    err = capsys.readouterr().err.strip()
    assert "nope.csv" in err and len(err.splitlines()) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("1704067200000,1,2,3\nnot,a,kline,file\n")
    assert main(["backtest", "--csv", str(bad), "--strategy", "rsi"]) != 0
    err = capsys.readouterr().err.strip()
    assert "bad.csv" in err and len(err.splitlines()) == 1


def test_store_without_candles_names_the_ingest_command(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", sqlite_url)
    assert (
        main(
            [
                "backtest",
                "--symbol",
                "SOLUSDT",
                "--start",
                "2024-01-01",
                "--end",
                "2024-02-01",
                "--strategy",
                "rsi",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert "run `cryptota ingest --symbols SOLUSDT" in err


def test_symbol_and_csv_are_exclusive(kline_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["backtest", "--csv", str(kline_csv), "--symbol", "BTCUSDT", "--strategy", "rsi"]) != 0
    )
    assert "exactly one of --symbol" in capsys.readouterr().err


def test_repeated_cli_backtest_is_served_from_redis(
    sqlite_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CRYPTOTA_REDIS_URL", redis_url)
    assert (
        main(
            [
                "ingest",
                "--source",
                "synthetic",
                "--symbols",
                "BTCUSDT",
                "--interval",
                "1h",
                "--start",
                "2024-01-01",
                "--end",
                "2024-02-01",
            ]
        )
        == 0
    )
    args = [
        "backtest",
        "--symbol",
        "BTCUSDT",
        "--interval",
        "1h",
        "--start",
        "2024-01-01",
        "--end",
        "2024-02-01",
        "--strategy",
        "rsi",
        "--params",
        RSI,
        "--json",
    ]
    capsys.readouterr()
    assert main(args) == 0
    first = capsys.readouterr()
    assert "served from the cache" not in first.err
    assert main(args) == 0
    second = capsys.readouterr()
    assert "served from the cache" in second.err
    assert json.loads(first.out) == json.loads(second.out)


def test_fast_engine_gives_the_same_result_as_backtrader(
    kline_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["backtest", "--csv", str(kline_csv), "--strategy", "rsi", "--params", RSI, "--json",
            "--slippage", "0.0005"]  # fmt: skip
    assert main(base) == 0
    reference = json.loads(capsys.readouterr().out)
    assert main([*base, "--engine", "fast"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert (reference["engine"], fast["engine"]) == ("backtrader", "fast")
    assert fast["trades"] == reference["trades"]
    assert fast["equity_final"] == reference["equity_final"]
    assert fast["metrics"] == reference["metrics"]


def test_fast_engine_names_what_it_supports(
    kline_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every built-in strategy runs on the fast engine; a user strategy (here one that reuses
    rsi's parameters) cannot, and is told which engine to use."""

    @register
    class UserRsi(Rsi):
        name: ClassVar[str] = "user_rsi"

    try:
        command = ["backtest", "--csv", str(kline_csv), "--strategy", "user_rsi"]
        assert main([*command, "--engine", "fast"]) != 0
    finally:
        unregister("user_rsi")
    err = capsys.readouterr().err.strip()
    assert "use --engine backtrader for user_rsi" in err and len(err.splitlines()) == 1
