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
    # Per symbol: an ingestion range, a backtest range (then the leaderboard), an optimisation;
    # under the code location's own job names, as its schedules and sensors launch them.
    assert sorted(run.job_name for run in runs) == sorted(
        ["candle_ingestion_job", "backtest_job", "optimization_job"] * 2
    )
    assert all(run.is_success for run in runs)
    # Three days are too few for the default walk-forward split: said, not failed.
    assert "walk_forward_report not run: 3 days of 1h candles are too few" in captured.err
    assert "`cryptota demo --days 17` or more runs it" in " ".join(captured.err.split())
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


def test_demo_walks_forward_when_the_days_allow_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BINANCE_BASE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CRYPTOTA_SYMBOLS", "BTCUSDT")
    monkeypatch.setenv("CRYPTOTA_STRATEGY_GRIDS", '{"rsi": {"period": [14]}}')
    monkeypatch.setenv("CRYPTOTA_OPTIMIZATION_GRIDS", '{"rsi": {"period": [7, 14]}}')
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["demo", "--days", "17"]) == 0
    assert "walk_forward_report not run" not in capsys.readouterr().err

    instance = _instance()
    assert {run.job_name for run in instance.get_runs()} == {
        "candle_ingestion_job",
        "backtest_job",
        "optimization_job",
        "walk_forward_job",
    }
    assert set(instance.get_materialized_partitions(AssetKey("walk_forward_report"))) == {"BTCUSDT"}


def test_the_demo_fits_the_minimum_trades_to_its_window() -> None:
    from cryptota_pipelines.demo import demo_min_trades

    assert [demo_min_trades(5, days) for days in (2, 3, 4, 17, 30, 90)] == [0, 0, 1, 4, 5, 5]
    assert demo_min_trades(0, 30) == 0  # a configured 0 stays 0
