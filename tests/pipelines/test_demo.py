"""`cryptota demo` (what `make run` runs): the whole graph in process on the embedded default,
into the persistent instance `make ui` opens, and the leaderboard on stdout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from cryptota_core.settings import load_settings
from cryptota_pipelines.cli import main
from tests.exchange.server import LocalExchange
from tests.services import free_port


def _instance() -> DagsterInstance:
    os.environ["DAGSTER_HOME"] = str(load_settings().resolved_dagster_home)
    return DagsterInstance.get()


def test_demo_runs_the_graph_on_synthetic_data_when_binance_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("BINANCE_BASE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["demo", "--days", "3"]) == 0
    captured = capsys.readouterr()
    assert "SYNTHETIC DATA" in captured.err
    assert "Strategy leaderboard (synthetic candles" in captured.out
    assert "BTCUSDT" in captured.out and "ETHUSDT" in captured.out
    assert "rsi-p" in captured.out and "rsi_ma-p" in captured.out
    summary = captured.out.split("Strategy leaderboard")[0]
    assert "Stored 1m candles (synthetic)" in summary
    assert summary.count("4,320") == 4  # rows and expected rows, both symbols: 3 full days

    instance = _instance()
    assert Path(os.environ["DAGSTER_HOME"]).is_relative_to(tmp_path)
    runs = instance.get_runs()
    assert len(runs) == 7  # 2 ingestion ranges, 2 backtest ranges, the leaderboard, 2 research
    assert all(run.is_success for run in runs)
    days = instance.get_materialized_partitions(AssetKey("candles_1m"))
    assert len(days) == 3 * 2
    backtests = instance.get_materialized_partitions(AssetKey("backtest_runs"))
    assert len(backtests) == 2 * 20  # 12 rsi + 8 rsi_ma parameter sets per symbol
    assert instance.get_latest_materialization_event(AssetKey("strategy_leaderboard"))
    # It ends with an optimisation of each symbol: its winner and deflated Sharpe ratio.
    optimisation = captured.out.split("Parameter optimisation (synthetic candles)")[1]
    assert optimisation.count("BTCUSDT") == 2 and optimisation.count("ETHUSDT") == 2
    assert "significant)" in optimisation
    assert set(instance.get_materialized_partitions(AssetKey("parameter_optimization"))) == {
        "BTCUSDT",
        "ETHUSDT",
    }


def test_demo_uses_binance_when_it_answers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRYPTOTA_STRATEGY_GRIDS", '{"rsi": {"period": [14]}}')
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with LocalExchange(("BTCUSDT", "ETHUSDT")) as exchange:
        monkeypatch.setenv("BINANCE_BASE_URL", exchange.url)
        assert main(["demo", "--days", "2"]) == 0
    captured = capsys.readouterr()
    assert "SYNTHETIC" not in captured.err
    assert "Strategy leaderboard (binance candles" in captured.out
    assert "rsi-p14-os30-ob70" in captured.out
