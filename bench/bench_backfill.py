"""A 60-day × 2-symbol backfill of ``candles_1m`` + ``candle_rollups`` through the real Dagster
daemon on PostgreSQL storage: how many runs it launches and how long it takes, against the same
key range as one in-process range run.

The deployment (code server, daemon, webserver on the repository's own dagster.yaml) is the one
the end-to-end tests use; the backfill is launched over GraphQL exactly as the UI launches it.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

from dagster import instance_for_test

from bench.common import Row
from tests.pipelines.conftest import temporary_database
from tests.pipelines.deployment import (
    LOCATION,
    REPOSITORY,
    Deployment,
    dagster_deployment,
    wait_for,
)
from tests.services import start_postgres

DAYS = 60
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
FIRST = date(2024, 1, 1)
GROUP = "backfill: 60 days × 2 symbols, candles_1m + candle_rollups"

LAUNCH = """mutation B($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
STATUS = """query B($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status } } }"""
RUNS = """query R($f: RunsFilter) { runsOrError(filter: $f) {
  ... on Runs { results { runId status startTime endTime } } } }"""


def _add_symbols(deployment: Deployment) -> None:
    """Let the symbol-universe sensor create the partitions, and wait out the runs it asks for
    (each new symbol's last days) so they do not overlap the measured backfill."""
    deployment.graphql(
        "mutation S($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }",
        {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
               "sensorName": "symbol_universe_sensor"}},
    )  # fmt: skip

    def sensor_runs_done() -> bool | None:
        found = deployment.graphql(
            RUNS,
            {"f": {"tags": [{"key": "dagster/sensor_name", "value": "symbol_universe_sensor"}]}},
        )["runsOrError"]["results"]
        done = len(found) == len(SYMBOLS) and all(
            r["status"] in ("SUCCESS", "FAILURE") for r in found
        )
        return done or None

    wait_for("the sensor's runs", sensor_runs_done, 300, 2)


def _daemon_backfill(deployment: Deployment, names: list[str]) -> tuple[float, list[float]]:
    started = time.monotonic()
    launched = deployment.graphql(
        LAUNCH,
        {"p": {"assetSelection": [{"path": ["candles_1m"]}, {"path": ["candle_rollups"]}],
               "partitionNames": names}},
    )["launchPartitionBackfill"]  # fmt: skip
    backfill_id = launched["backfillId"]

    def finished() -> str | None:
        status = deployment.graphql(STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        return (
            None if status["status"] in ("REQUESTED", "CANCELING", "FAILING") else status["status"]
        )

    status = wait_for("the backfill", finished, 1800, 1.0)
    elapsed = time.monotonic() - started
    assert status == "COMPLETED_SUCCESS", status
    runs = deployment.graphql(
        RUNS, {"f": {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}}
    )["runsOrError"]["results"]
    return elapsed, [r["endTime"] - r["startTime"] for r in runs]


def _in_process_range_run(candle_url: str, home: Path) -> float:
    import os

    from cryptota_core.settings import load_settings
    from cryptota_pipelines.definitions import build_defs
    from cryptota_pipelines.partitions import range_tags

    os.environ.update({"CRYPTOTA_DATABASE_URL": candle_url, "CRYPTOTA_SOURCE": "synthetic",
                       "CRYPTOTA_HOME": str(home)})  # fmt: skip
    job = build_defs(load_settings()).get_job_def("candle_ingestion_job")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", SYMBOLS)
        started = time.monotonic()
        result = job.execute_in_process(
            instance=instance,
            tags=range_tags(FIRST, FIRST + timedelta(days=DAYS - 1), SYMBOLS),
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        assert result.success
        return time.monotonic() - started


def run() -> list[Row]:
    names = [f"{FIRST + timedelta(days=i)}|{s}" for i in range(DAYS) for s in SYMBOLS]
    server = start_postgres()
    try:
        with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            candles = stack.enter_context(temporary_database(server.url))
            env = {
                "CRYPTOTA_HOME": str(root / "home"),
                "CRYPTOTA_DATABASE_URL": candles,
                "CRYPTOTA_SOURCE": "synthetic",
                "CRYPTOTA_SYMBOLS": ",".join(SYMBOLS),
            }
            storage = stack.enter_context(temporary_database(server.url))
            with dagster_deployment(root, storage_url=storage, cryptota_env=env) as deployment:
                _add_symbols(deployment)
                elapsed, run_seconds = _daemon_backfill(deployment, names)
            in_process = _in_process_range_run(
                stack.enter_context(temporary_database(server.url)), root / "home2"
            )
    finally:
        server.stop()
    note = f"{len(run_seconds)} runs of {', '.join(f'{s:.1f}' for s in run_seconds)} s"
    return [
        Row(GROUP, f"daemon backfill ({note})", "cryptota via dagster-daemon", len(names),
            elapsed, unit="partitions"),
        Row(GROUP, "one in-process range run", "cryptota execute_in_process", len(names),
            in_process, unit="partitions"),
    ]  # fmt: skip
