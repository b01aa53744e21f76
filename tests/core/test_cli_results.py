"""`cryptota results RUN_ID`: the results a Dagster run stored, read back by run id as the same
JSON `cryptota backtest --json` prints; a run with none is one clear line."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cryptota_core.app.backtests import CODE_VERSION, backtest_or_cache
from cryptota_core.app.candles import candles_from_store
from cryptota_core.app.ingest import ingest
from cryptota_core.cli import main
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.results_store import ResultsStore

START, END = pd.Timestamp("2024-03-01", tz="UTC"), pd.Timestamp("2024-03-11", tz="UTC")


@pytest.fixture
def stored(database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, object]]:
    """Two runs' results in the store: run-a stored RSI on BTCUSDT, run-b two on ETHUSDT.
    Returns each result's JSON by (run, symbol, strategy)."""
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", database_url)
    store = CandleStore.from_url(database_url)
    results = ResultsStore.from_url(database_url)
    ingest(store, SyntheticSource(), ["BTCUSDT", "ETHUSDT"], "1m", START, END)
    expected = {}
    for run_id, symbol, strategy, params in [
        ("run-a", "BTCUSDT", "rsi", {"period": 14, "oversold": 30, "overbought": 70}),
        ("run-b", "ETHUSDT", "rsi", {"period": 7}),
        ("run-b", "ETHUSDT", "rsi_ma", {"period": 14, "ma_period": 20}),
    ]:
        candles = candles_from_store(store, symbol, "15m", START, END)
        result = backtest_or_cache(candles, strategy, params, cash=5_000, engine="fast").result
        results.save_backtest(
            result,
            exchange="synthetic",
            symbol=symbol,
            candle_fingerprint=candles.fingerprint,
            code_version=CODE_VERSION,
            run_id=run_id,
        )
        expected[f"{run_id} {symbol} {strategy}"] = result.to_dict()
    store.engine.dispose()
    results.engine.dispose()
    return expected


def test_results_of_a_run_print_the_backtest_json(
    stored: dict[str, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["results", "run-a", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) == stored["run-a BTCUSDT rsi"]

    assert main(["results", "run-b", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [
        stored["run-b ETHUSDT rsi"],
        stored["run-b ETHUSDT rsi_ma"],
    ]


def test_results_table_names_symbol_and_parameter_set(
    stored: dict[str, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["results", "run-a"]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT" in out and "rsi-p14-os30-ob70" in out


def test_a_run_without_results_is_one_clear_line(
    stored: dict[str, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["results", "no-such-run", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: no backtest result stored by Dagster run 'no-such-run'")
    assert captured.err.count("\n") == 1
