"""End to end with real processes, as ``cryptota stack`` runs them: user-code gRPC server, daemon,
webserver and two Celery workers on the production dagster.yaml (storage in throwaway PostgreSQL).
Sensors are turned on through GraphQL as an operator would; its runs must pass through the queue to
success, a backfill launched through GraphQL must cover its partitions in a few range runs, a
distributed run must execute its steps on the workers, and the webserver must serve the graph."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from cryptota_core.market.frame import SeriesKey
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.results_store import ResultsStore
from cryptota_pipelines.defs.ingestion.sensors import NEW_SYMBOL_DAYS
from tests.pipelines.conftest import SYMBOLS, temporary_database
from tests.pipelines.deployment import (
    LOCATION,
    REPOSITORY,
    Deployment,
    dagster_deployment,
    wait_for,
)

pytestmark = pytest.mark.postgres

RUN_TIMEOUT = 180
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
BACKTEST_GRIDS = {"rsi": {"period": [7, 14, 21], "oversold": [30], "overbought": [70]}}

_RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""

_RUN_EVENTS = """
query RunEvents($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events { __typename } }
  }
}
"""


@pytest.fixture(scope="module")
def candles_url(postgres_admin_url: str) -> Iterator[str]:
    with temporary_database(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str, candles_url: str
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("deployment")
    cryptota_env = {
        "CRYPTOTA_HOME": str(root / "cryptota"),
        "CRYPTOTA_DATABASE_URL": candles_url,
        "CRYPTOTA_SOURCE": "synthetic",
        "CRYPTOTA_SYMBOLS": ",".join(SYMBOLS),
        # Backtests on the 7 days the symbol sensor ingests, over a 3-set grid.
        "CRYPTOTA_BACKTEST_DAYS": "7",
        "CRYPTOTA_STRATEGY_GRIDS": json.dumps(BACKTEST_GRIDS),
    }
    with (
        temporary_database(postgres_admin_url) as storage_url,
        dagster_deployment(
            root, storage_url=storage_url, cryptota_env=cryptota_env, workers=2
        ) as running,
    ):
        yield running


def _print_logs(deployment: Deployment) -> None:
    for name in deployment.processes:
        print(f"----- {name} -----\n{deployment.log(name)[-6000:]}")


def _runs(deployment: Deployment, tags: list[dict[str, str]]) -> list[dict[str, Any]]:
    data = deployment.graphql(_RUNS, {"filter": {"tags": tags}})
    return list(data["runsOrError"]["results"])


def _wait_until_finished(
    deployment: Deployment, tags: list[dict[str, str]], count: int
) -> list[dict[str, Any]]:
    def finished() -> list[dict[str, Any]] | None:
        runs = _runs(deployment, tags)
        return runs if len(runs) >= count and all(r["status"] in FINISHED for r in runs) else None

    try:
        return wait_for(f"{count} runs tagged {tags} to finish", finished, RUN_TIMEOUT, 2.0)
    except TimeoutError:
        _print_logs(deployment)
        raise


def _start_sensor(deployment: Deployment, name: str) -> None:
    """Turn a sensor on through GraphQL, as an operator would in the UI."""
    started = deployment.graphql(
        """
        mutation Start($selector: SensorSelector!) {
          startSensor(sensorSelector: $selector) {
            __typename
            ... on Sensor { sensorState { status } }
            ... on PythonError { message stack }
          }
        }
        """,
        {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "sensorName": name,
            }
        },
    )
    sensor = started["startSensor"]
    assert sensor["__typename"] == "Sensor" and sensor["sensorState"]["status"] == "RUNNING", sensor


@pytest.fixture(scope="module")
def sensor_runs(deployment: Deployment) -> list[dict[str, Any]]:
    """Turn on symbol_universe_sensor through GraphQL and wait for the runs it launches."""
    _start_sensor(deployment, "symbol_universe_sensor")
    tags = [{"key": "dagster/sensor_name", "value": "symbol_universe_sensor"}]
    return _wait_until_finished(deployment, tags, count=len(SYMBOLS))


def test_sensor_triggered_runs_go_from_queued_to_success(
    deployment: Deployment, sensor_runs: list[dict[str, Any]], candles_url: str
) -> None:
    assert [r["status"] for r in sensor_runs] == ["SUCCESS"] * len(SYMBOLS)
    for run in sensor_runs:
        events = deployment.graphql(_RUN_EVENTS, {"runId": run["runId"]})["logsForRun"]["events"]
        kinds = [e["__typename"] for e in events]
        # Through the run queue (QueuedRunCoordinator drained by the daemon), not launched directly.
        assert (
            kinds.index("RunEnqueuedEvent")
            < kinds.index("RunStartEvent")
            < kinds.index("RunSuccessEvent")
        )
        assert kinds.count("MaterializationEvent") == 2 * NEW_SYMBOL_DAYS  # candles + rollups
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["cryptota/trigger"] == "new_symbol"

    yesterday = pd.Timestamp(datetime.now(UTC).date() - timedelta(days=1), tz="UTC")
    start, end = (
        yesterday - pd.Timedelta(days=NEW_SYMBOL_DAYS - 1),
        yesterday + pd.Timedelta(days=1),
    )
    store = CandleStore.from_url(candles_url)
    try:
        for symbol in SYMBOLS:
            series = SeriesKey(exchange="synthetic", symbol=symbol, interval="1m")
            assert store.count(series, start, end) == NEW_SYMBOL_DAYS * 1440
    finally:
        store.engine.dispose()


def _launch_backfill(deployment: Deployment, assets: list[str], partitions: list[str]) -> str:
    """Launch a backfill through GraphQL, as the UI does; return its id."""
    launched = deployment.graphql(
        """
        mutation Backfill($params: LaunchBackfillParams!) {
          launchPartitionBackfill(backfillParams: $params) {
            __typename
            ... on LaunchBackfillSuccess { backfillId }
            ... on PythonError { message }
          }
        }
        """,
        {
            "params": {
                "assetSelection": [{"path": [asset]} for asset in assets],
                "partitionNames": partitions,
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return str(launched["backfillId"])


def _finished_backfill(deployment: Deployment, backfill_id: str) -> list[dict[str, Any]]:
    """Wait for the daemon to finish the backfill; return its runs."""

    def backfill_done() -> str | None:
        status = deployment.graphql(
            "query B($id: String!) { partitionBackfillOrError(backfillId: $id) "
            "{ ... on PartitionBackfill { status } } }",
            {"id": backfill_id},
        )["partitionBackfillOrError"]["status"]
        return None if status in ("REQUESTED", "CANCELING", "FAILING") else str(status)

    try:
        status = wait_for("the backfill to finish", backfill_done, RUN_TIMEOUT, 2.0)
    except TimeoutError:
        _print_logs(deployment)
        raise
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status
    return _runs(deployment, [{"key": "dagster/backfill", "value": backfill_id}])


def _range(run: dict[str, Any]) -> tuple[str, str]:
    tags = {t["key"]: t["value"] for t in run["tags"]}
    return tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]


def test_backfill_through_the_daemon_covers_its_range_in_few_runs(
    deployment: Deployment, sensor_runs: list[dict[str, Any]]
) -> None:
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    backfill_id = _launch_backfill(
        deployment,
        ["candles_1m", "candle_rollups"],
        [f"{d}|{s}" for d in days for s in SYMBOLS],
    )
    runs = _finished_backfill(deployment, backfill_id)

    # The backfill policy turns 6 partitions into one range run per symbol, never one per day.
    assert len(runs) == len(SYMBOLS)
    assert {r["status"] for r in runs} == {"SUCCESS"}
    assert sorted(map(_range, runs)) == [(f"{days[0]}|{s}", f"{days[-1]}|{s}") for s in SYMBOLS]


@pytest.fixture(scope="module")
def param_sets(deployment: Deployment) -> list[str]:
    """Turn on param_set_sensor through GraphQL; the parameter-set partitions it adds."""
    _start_sensor(deployment, "param_set_sensor")

    def added() -> list[str] | None:
        node = deployment.graphql(
            '{ assetNodeOrError(assetKey: {path: ["backtest_runs"]}) '
            "{ ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }"
        )["assetNodeOrError"]
        dims = {d["name"]: d["partitionKeys"] for d in node["partitionKeysByDimension"]}
        return dims["param_set"] or None

    return wait_for("param_set_sensor to add the param_sets", added, RUN_TIMEOUT, 1.0)


def _launch_run(
    deployment: Deployment, job: str, tags: dict[str, str], run_config: dict[str, Any] | None = None
) -> str:
    """Launch ``job`` through GraphQL, as the UI's launchpad does; return the run id."""
    launched = deployment.graphql(
        """
        mutation Launch($params: ExecutionParams!) {
          launchRun(executionParams: $params) {
            __typename
            ... on LaunchRunSuccess { run { runId } }
            ... on PythonError { message }
            ... on RunConfigValidationInvalid { errors { message } }
          }
        }
        """,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                    "jobName": job,
                },
                "runConfigData": run_config or {},
                "executionMetadata": {
                    "tags": [{"key": key, "value": value} for key, value in tags.items()]
                },
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return str(launched["run"]["runId"])


def test_backtests_refresh_in_one_queued_run_and_backfill_in_one_run_per_symbol(
    deployment: Deployment,
    sensor_runs: list[dict[str, Any]],
    param_sets: list[str],
    candles_url: str,
) -> None:
    """Backtests over the recent days the symbol sensor ingested (the 7-day window): a backfill
    and a range run of the same partitions at once, leaving one stored result per partition."""
    slugs = param_sets
    assert slugs == ["rsi-p7-os30-ob70", "rsi-p14-os30-ob70", "rsi-p21-os30-ob70"]
    partitions = [f"{p}|{s}" for p in slugs for s in SYMBOLS]

    # A UI backfill of every partition, picked up by the daemon on its next pass...
    backfill_id = _launch_backfill(deployment, ["backtest_runs"], partitions)
    # ...and meanwhile what the nightly schedule launches: one queued run over all of them.
    _launch_run(
        deployment,
        "backtest_job",
        {
            "dagster/asset_partition_range_start": partitions[0],
            "dagster/asset_partition_range_end": partitions[-1],
            "cryptota/trigger": "manual",
        },
    )

    (run,) = _wait_until_finished(deployment, [{"key": "cryptota/trigger", "value": "manual"}], 1)
    assert run["status"] == "SUCCESS"
    events = deployment.graphql(_RUN_EVENTS, {"runId": run["runId"]})["logsForRun"]["events"]
    # All 6 backtest partitions and the leaderboard (after both checks passed), in one run.
    assert [e["__typename"] for e in events].count("MaterializationEvent") == len(partitions) + 1

    # The daemon cuts a multi-partition single-run backfill into one range per key of the
    # smaller dimension: here one run per symbol, each over every parameter set. Its runs are
    # requested at once, so waiting for them (not for the daemon's pass that marks the
    # backfill complete) is enough.
    tags = [{"key": "dagster/backfill", "value": backfill_id}]
    runs = _wait_until_finished(deployment, tags, count=len(SYMBOLS))
    assert {r["status"] for r in runs} == {"SUCCESS"}
    assert sorted(map(_range, runs)) == [(f"{slugs[0]}|{s}", f"{slugs[-1]}|{s}") for s in SYMBOLS]

    results = ResultsStore.from_url(candles_url, create=False)
    try:
        assert results.count_runs() == len(partitions)  # three writers, one copy each
    finally:
        results.engine.dispose()


_STEP_WORKERS = """
query StepWorkers($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        ... on EngineEvent { stepKey metadataEntries { label ... on TextMetadataEntry { text } } }
      }
    }
  }
}
"""


def test_a_distributed_run_executes_its_steps_on_the_stacks_celery_workers(
    deployment: Deployment, sensor_runs: list[dict[str, Any]], param_sets: list[str]
) -> None:
    """distributed_backtest_job launched from the UI: the run worker hands its steps to the
    broker, and the stack's two workers (worker-1, worker-2) execute them."""
    config = {"param_sets": param_sets, "partitions_per_step": 1, "optimize": False}
    run_id = _launch_run(
        deployment,
        "distributed_backtest_job",
        {"cryptota/trigger": "celery"},
        {"ops": {"plan_steps": {"config": config}}},
    )
    (run,) = _wait_until_finished(deployment, [{"key": "cryptota/trigger", "value": "celery"}], 1)
    assert run["runId"] == run_id and run["status"] == "SUCCESS"
    events = deployment.graphql(_STEP_WORKERS, {"runId": run_id})["logsForRun"]["events"]
    ran = {
        event["stepKey"]: entry["text"]
        for event in events
        for entry in event.get("metadataEntries") or []
        if entry["label"] == "Celery worker" and event.get("stepKey")
    }
    shards = {step for step in ran if step.startswith("backtest_shard")}
    assert len(shards) == len(SYMBOLS) * len(param_sets), ran
    assert {host.split("@")[0] for host in ran.values()} <= {"worker-1", "worker-2"}


def _sensor_ticks(deployment: Deployment, name: str) -> list[dict[str, Any]]:
    data = deployment.graphql(
        """
        query Ticks($selector: SensorSelector!) {
          sensorOrError(sensorSelector: $selector) {
            ... on Sensor { sensorState { ticks(limit: 5) { status } } }
          }
        }
        """,
        {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "sensorName": name,
            }
        },
    )
    return list(data["sensorOrError"]["sensorState"]["ticks"])


def test_the_automation_sensor_builds_rollups_after_a_backfill_of_candles_alone(
    deployment: Deployment, sensor_runs: list[dict[str, Any]]
) -> None:
    """default_automation_condition_sensor, turned on like any sensor, is what evaluates the
    conditions: candle_rollups follows a backfill that materialised only candles_1m."""
    name = "default_automation_condition_sensor"
    turned_on = datetime.now(UTC)
    _start_sensor(deployment, name)
    # Its first tick only starts the watch (updates before it are not "new").
    wait_for(f"the first tick of {name}", lambda: _sensor_ticks(deployment, name), RUN_TIMEOUT)
    days = ["2024-02-01", "2024-02-02"]
    partitions = [f"{d}|{s}" for d in days for s in SYMBOLS]
    backfill_id = _launch_backfill(deployment, ["candles_1m"], partitions)
    _finished_backfill(deployment, backfill_id)

    def rollups() -> list[dict[str, Any]] | None:
        node = deployment.graphql(
            """
            query Rollups($partitions: [String!]) {
              assetNodeOrError(assetKey: {path: ["candle_rollups"]}) {
                ... on AssetNode {
                  assetMaterializations(partitions: $partitions) { partition runId }
                }
              }
            }
            """,
            {"partitions": partitions},
        )["assetNodeOrError"]
        found = node["assetMaterializations"]
        return found if {m["partition"] for m in found} == set(partitions) else None

    try:
        built = wait_for("the automation sensor to build the rollups", rollups, RUN_TIMEOUT, 2.0)
    except TimeoutError:
        _print_logs(deployment)
        raise
    backfill_runs = _runs(deployment, [{"key": "dagster/backfill", "value": backfill_id}])
    # Built by runs the sensor requested, not by the backfill of the candles.
    assert not {m["runId"] for m in built} & {r["runId"] for r in backfill_runs}
    # And nothing ingested: candles_1m's condition waits for a 00:15 UTC tick after the sensor
    # was turned on (its first evaluation only starts the watch).
    ingested = deployment.graphql(
        """
        query Automated($filter: RunsFilter) {
          runsOrError(filter: $filter) { ... on Runs { results { assetSelection { path } } } }
        }
        """,
        {"filter": {"tags": [{"key": "dagster/sensor_name", "value": name}]}},
    )["runsOrError"]["results"]
    assert ingested, "the sensor launched the rollups' runs"
    nightly = datetime.now(UTC).replace(hour=0, minute=15, second=0, microsecond=0)
    if turned_on < nightly:  # a real 00:15 UTC tick passed during the test: ingestion is due
        return
    assert ["candles_1m"] not in [a["path"] for r in ingested for a in r["assetSelection"] or []]


def test_webserver_serves_the_asset_graph_and_partitions(
    deployment: Deployment, sensor_runs: list[dict[str, Any]]
) -> None:
    data = deployment.graphql(
        """
        {
          assetNodes { assetKey { path } groupName dependencyKeys { path } }
          assetNodeOrError(assetKey: {path: ["candles_1m"]}) {
            ... on AssetNode {
              partitionKeysByDimension { name partitionKeys }
              assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
            }
          }
        }
        """
    )
    nodes = {tuple(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(nodes) == {  # DESIGN §4's asset graph
        ("candles_1m",),
        ("candle_rollups",),
        ("backtest_runs",),
        ("strategy_leaderboard",),
        ("parameter_optimization",),
        ("walk_forward_report",),
        ("trading_signals",),
    }
    assert nodes[("candles_1m",)]["groupName"] == "ingestion"
    assert nodes[("candle_rollups",)]["dependencyKeys"] == [{"path": ["candles_1m"]}]
    assert nodes[("backtest_runs",)]["dependencyKeys"] == [{"path": ["candles_1m"]}]
    assert nodes[("strategy_leaderboard",)]["dependencyKeys"] == [{"path": ["backtest_runs"]}]

    candles = data["assetNodeOrError"]
    dims = {d["name"]: d["partitionKeys"] for d in candles["partitionKeysByDimension"]}
    assert dims["symbol"] == SYMBOLS  # added by the sensor
    assert dims["date"][0] == "2017-08-17"
    assert dims["date"][-1] == (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    checks = candles["assetChecksOrError"]["checks"]
    assert sorted(c["name"] for c in checks) == [
        "completeness",
        "no_duplicates",
        "no_future_candles",
        "ohlc_sanity",
        "volume_non_negative",
    ]
    assert all(c["blocking"] for c in checks)

    # Dagster's freshness daemon evaluates the FreshnessPolicy: candles just ingested are fresh.
    def freshness() -> str | None:
        node = deployment.graphql(
            '{ assetNodeOrError(assetKey: {path: ["candles_1m"]}) '
            "{ ... on AssetNode { freshnessStatusInfo { freshnessStatus } } } }"
        )["assetNodeOrError"]
        status = (node["freshnessStatusInfo"] or {}).get("freshnessStatus")
        return None if status in (None, "UNKNOWN") else str(status)

    assert wait_for("the freshness of candles_1m", freshness, RUN_TIMEOUT, 2.0) == "HEALTHY"


def test_daemon_reports_healthy(deployment: Deployment) -> None:
    data = deployment.graphql(
        "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"
    )
    statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
    unhealthy = [s["daemonType"] for s in statuses if s["required"] and not s["healthy"]]
    assert not unhealthy
    assert {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR", "BACKFILL"} <= {
        s["daemonType"] for s in statuses
    }
