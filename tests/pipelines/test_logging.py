"""Inside a run, the core's log records carry that run's id: it is looked up from the Dagster step
executing (installed once per process, nothing per asset), and none is reported after the step."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dagster import DagsterInstance, asset, materialize

from cryptota_core.logs import bind_run_id, configure_logging, current_run_id
from cryptota_core.settings import Settings
from cryptota_pipelines.defs.backtests.assets import strategy_leaderboard
from cryptota_pipelines.defs.ingestion.assets import candles_1m
from cryptota_pipelines.partitions import partition_key
from cryptota_pipelines.resources import resources_from_settings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    bind_run_id(None)
    configure_logging()


@pytest.fixture
def json_settings(settings: Settings) -> Settings:
    """JSON lines at DEBUG, so every record the core emits is on stderr to be checked."""
    return settings.model_copy(update={"log_format": "json", "log_level": "DEBUG"})


def _core_records(
    capfd: pytest.CaptureFixture[str], run: Callable[[], str]
) -> tuple[str, list[dict[str, Any]]]:
    """Run ``run`` (it returns the run id) and parse the core's JSON lines it printed."""
    capfd.readouterr()
    run_id = run()
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    return run_id, [r for r in records if str(r.get("logger", "")).startswith("cryptota_core")]


def test_a_step_that_requests_no_resource_still_sees_its_run_id(
    json_settings: Settings, instance: DagsterInstance
) -> None:
    """Binding needs nothing per asset: an asset with no resources at all reports its run id."""
    resources_from_settings(json_settings)  # what loading the code location does
    seen: list[str | None] = []

    @asset
    def bare() -> None:
        seen.append(current_run_id())

    result = materialize([bare], instance=instance)
    assert result.success and seen == [result.run_id]
    assert current_run_id() is None


def test_core_records_of_an_ingestion_run_carry_its_run_id(
    json_settings: Settings,
    instance_with_symbols: DagsterInstance,
    capfd: pytest.CaptureFixture[str],
) -> None:
    def run() -> str:
        result = materialize(
            [candles_1m],
            instance=instance_with_symbols,
            resources=resources_from_settings(json_settings),
            partition_key=partition_key("2024-01-05", "BTCUSDT"),
        )
        assert result.success
        return result.run_id

    run_id, records = _core_records(capfd, run)
    assert records and {r["run_id"] for r in records} == {run_id}

    # The step is over: what the process logs now belongs to no run.
    assert current_run_id() is None
    logging.getLogger("cryptota_core.test").warning("after the run")
    after = json.loads(capfd.readouterr().err.strip().splitlines()[-1])
    assert after["message"] == "after the run" and after["run_id"] is None


def test_leaderboard_and_results_retention_records_carry_the_run_id(
    json_settings: Settings,
    instance: DagsterInstance,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The two steps that touch only the results store (they never bound the id before)."""
    from cryptota_pipelines.definitions import build_defs

    def leaderboard() -> str:
        result = materialize(
            [strategy_leaderboard],
            instance=instance,
            resources=resources_from_settings(json_settings),
        )
        assert result.success
        return result.run_id

    def retention() -> str:
        result = (
            build_defs(json_settings)
            .get_job_def("results_retention_job")
            .execute_in_process(
                run_config={"ops": {"purge_old_backtest_runs": {"config": {"keep_days": 30}}}},
                instance=instance,
            )
        )
        assert result.success
        return result.run_id

    for run in (leaderboard, retention):
        run_id, records = _core_records(capfd, run)
        assert records, f"{run.__name__}: the core logged nothing"
        assert {r["run_id"] for r in records} == {run_id}, run.__name__
