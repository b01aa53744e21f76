"""distributed_backtest_job on real Celery workers: two ``dagster-celery worker start`` processes
on a throwaway Redis broker, a persistent Dagster instance in throwaway PostgreSQL that the run
and both workers share (the production dagster.yaml), the run executed by ``dagster job execute``
as a run worker would. The steps must run on both workers and store exactly one result per
partition; a worker SIGKILLed mid-step must leave no partial result and its step must run again
on the other worker."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from sqlalchemy import text

from cryptota_core.app.backtests import register_param_sets
from cryptota_core.app.ingest import ingest
from cryptota_core.backtest.runs import expand_param_grids
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.results_store import ResultsStore
from cryptota_pipelines.defs.backtests.checks import CHECK_NAMES
from cryptota_pipelines.defs.distributed.jobs import choose, shard
from cryptota_pipelines.executors import CELERY_EXECUTOR_CONFIG
from tests.pipelines.conftest import SYMBOLS, temporary_database
from tests.pipelines.deployment import REPO, dagster_pg_env, wait_for
from tests.pipelines.workers import (
    CeleryWorker,
    answering,
    start_celery_worker,
    write_worker_config,
)
from tests.services import RedisServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

GRIDS = {"rsi": {"period": [7, 10, 14, 21], "oversold": [20, 25, 30], "overbought": [70, 75]}}
SLUGS = [p.slug for p in expand_param_grids(GRIDS)]  # 24 parameter sets
OPTIMIZATION_GRIDS = {"rsi": {"period": [7, 14, 21], "oversold": [25, 30], "overbought": [70]}}
INTERVAL, WINDOW_DAYS = "1m", 5
VISIBILITY_TIMEOUT = 20
"""The workers' broker visibility timeout here: longer than any step of these runs (a few
seconds), short enough that a lost worker's step is handed out again within the test."""
RUN_TIMEOUT = 150
JOB = "distributed_backtest_job"


def test_workers_run_with_the_executors_config() -> None:
    """celery.yaml (what the workers start with) is the executor's own config block: both sides
    use the same broker and acknowledge late."""
    worker_file = yaml.safe_load((REPO / "celery.yaml").read_text())
    assert worker_file["execution"]["config"] == CELERY_EXECUTOR_CONFIG
    options = CELERY_EXECUTOR_CONFIG["config_source"]
    assert options["task_acks_late"] and options["task_reject_on_worker_lost"]


def test_a_run_is_cut_into_one_step_per_symbol_and_batch_of_parameter_sets() -> None:
    assert shard(["BTCUSDT", "ETHUSDT"], ["a", "b", "c"], 2) == [
        ("BTCUSDT", ["a", "b"]),
        ("BTCUSDT", ["c"]),
        ("ETHUSDT", ["a", "b"]),
        ("ETHUSDT", ["c"]),
    ]
    assert choose(None, ["BTCUSDT", "ETHUSDT"], "symbols") == ["BTCUSDT", "ETHUSDT"]
    with pytest.raises(InvalidInputError, match=r"^symbols: 'DOGEUSDT' is not a symbols partition"):
        choose(["BTCUSDT", "DOGEUSDT"], ["BTCUSDT", "ETHUSDT"], "symbols")
    with pytest.raises(InvalidInputError, match="turn on param_set_sensor"):
        choose(None, [], "param_sets")
    with pytest.raises(InvalidInputError, match=r"^partitions_per_step: 0 is not a positive"):
        shard(["BTCUSDT"], ["a"], 0)


@dataclass
class Cluster:
    """The running pieces: the instance (shared with the workers through its storage), the
    environment every process gets, the workers, the broker and the candle/results store."""

    root: Path
    env: dict[str, str]
    broker_url: str
    store_url: str
    instance: DagsterInstance
    workers: list[CeleryWorker] = field(default_factory=list)

    def logs(self) -> str:
        parts = [f"----- {w.name} -----\n{w.log()[-6000:]}" for w in self.workers]
        for path in sorted(self.root.glob("run-*.log")):
            parts.append(f"----- {path.name} -----\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)


def _worker_config(path: Path) -> Path:
    """celery.yaml's block with a short visibility timeout, swept every second."""
    config = json.loads(json.dumps(CELERY_EXECUTOR_CONFIG))
    config["config_source"]["broker_transport_options"].update(
        visibility_timeout=VISIBILITY_TIMEOUT,
        unacked_restore_interval=1,
        unacked_restore_throttle=1,
    )
    return write_worker_config(path, config)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin_url: str,
    redis_server: RedisServer | str,
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("celery")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    redis_url = redis_server if isinstance(redis_server, str) else redis_server.url
    broker_url = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(broker_url).flushdb()
    with (
        temporary_database(postgres_admin_url) as storage_url,
        temporary_database(postgres_admin_url) as store_url,
        pytest.MonkeyPatch.context() as env_patch,
    ):
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(root),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO),
            "DAGSTER_HOME": str(home),
            **dagster_pg_env(storage_url),
            "CRYPTOTA_HOME": str(root / "cryptota"),
            "CRYPTOTA_DATABASE_URL": store_url,
            "CRYPTOTA_SOURCE": "synthetic",
            "CRYPTOTA_SYMBOLS": ",".join(SYMBOLS),
            "CRYPTOTA_BACKTEST_INTERVAL": INTERVAL,
            "CRYPTOTA_BACKTEST_DAYS": str(WINDOW_DAYS),
            "CRYPTOTA_CELERY_BROKER_URL": broker_url,
            # parameter_optimization of each symbol: a small grid on the same five days.
            "CRYPTOTA_OPTIMIZATION_GRIDS": json.dumps(OPTIMIZATION_GRIDS),
            "CRYPTOTA_OPTIMIZATION_DAYS": str(WINDOW_DAYS),
            "CRYPTOTA_OPTIMIZATION_RECHECK": "1",
        }
        for name, value in dagster_pg_env(storage_url).items():  # what dagster.yaml reads
            env_patch.setenv(name, value)
        with DagsterInstance.from_config(str(home)) as instance:
            cluster = Cluster(root, env, broker_url, store_url, instance)
            _prepare(cluster)
            config = _worker_config(root / "worker.yaml")
            try:
                for name in ("w1", "w2"):
                    cluster.workers.append(start_celery_worker(name, config, env, root))
                _wait(
                    cluster,
                    "both Celery workers to answer",
                    lambda: answering(broker_url, cluster.workers),
                    120,
                )
                yield cluster
            finally:
                for worker in cluster.workers:
                    worker.stop()


def _wait(cluster: Cluster, what: str, probe: Any, timeout: float, interval: float = 1.0) -> Any:
    """``wait_for`` that prints the workers' and runs' logs when it times out."""
    try:
        return wait_for(what, probe, timeout, interval)
    except TimeoutError:
        print(cluster.logs())
        raise


def _prepare(cluster: Cluster) -> None:
    """Candles for the window, the parameter sets in the results store and both dynamic
    partitions in the instance: what ingestion and the two sensors would have done."""
    end = pd.Timestamp.now(tz="UTC").floor("D")
    store = CandleStore.from_url(cluster.store_url)
    results = ResultsStore.from_url(cluster.store_url)
    try:
        ingest(store, SyntheticSource(), SYMBOLS, "1m", end - pd.Timedelta(days=WINDOW_DAYS), end)
        register_param_sets(results, expand_param_grids(GRIDS))
    finally:
        store.engine.dispose()
        results.engine.dispose()
    cluster.instance.add_dynamic_partitions("symbols", SYMBOLS)
    cluster.instance.add_dynamic_partitions("param_sets", SLUGS)


def _launch(cluster: Cluster, label: str, selection: dict[str, Any]) -> subprocess.Popen[bytes]:
    """``dagster job execute`` of the job with ``selection`` as its planning step's config: the
    run's orchestration in this process, its steps on the workers. Tagged ``cryptota/test``."""
    run_config = cluster.root / f"run-{label}.yaml"
    run_config.write_text(yaml.safe_dump({"ops": {"plan_steps": {"config": selection}}}))
    log = open(cluster.root / f"run-{label}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "job",
            "execute",
            "-m",
            "cryptota_pipelines.definitions",
            "-j",
            JOB,
            "-c",
            str(run_config),
            "--tags",
            json.dumps({"cryptota/test": label}),
        ],
        cwd=cluster.root,
        env=cluster.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _run_id(cluster: Cluster, label: str) -> str | None:
    runs = cluster.instance.get_runs(RunsFilter(tags={"cryptota/test": label}))
    return runs[0].run_id if runs else None


def _finish(cluster: Cluster, process: subprocess.Popen[bytes], label: str) -> str:
    """Wait for the run to end; return its id once it succeeded."""
    try:
        process.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        print(cluster.logs())
        raise AssertionError(f"run {label} did not finish within {RUN_TIMEOUT} s") from None
    run_id = _run_id(cluster, label)
    assert run_id is not None, cluster.logs()
    run = cluster.instance.get_run_by_id(run_id)
    assert run is not None and run.status == DagsterRunStatus.SUCCESS, cluster.logs()
    return run_id


def _step_workers(cluster: Cluster, run_id: str) -> dict[str, list[str]]:
    """Each step's Celery workers in order, from the engine event every worker records when it
    takes a step ("Executing steps ... in celery worker", metadata "Celery worker")."""
    ran: dict[str, list[str]] = {}
    for record in cluster.instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = record.get_dagster_event()
        metadata = event.engine_event_data.metadata if event.engine_event_data else {}
        if "Celery worker" in metadata and event.step_key:
            ran.setdefault(event.step_key, []).append(str(metadata["Celery worker"].value))
    return ran


def _stored(cluster: Cluster) -> pd.DataFrame:
    """Every stored backtest result with the size of its equity curve and trade list."""
    query = """
        SELECT r.run_key, r.symbol, r.slug, r.bars, r.dagster_run_id,
               (SELECT count(*) FROM equity_curves e WHERE e.run_key = r.run_key) AS equity_points,
               (SELECT count(*) FROM backtest_trades t WHERE t.run_key = r.run_key) AS trades
        FROM backtest_results r ORDER BY r.symbol, r.slug
    """
    results = ResultsStore.from_url(cluster.store_url, create=False)
    try:
        with results.engine.connect() as conn:
            return pd.DataFrame(conn.execute(text(query)).mappings().all())
    finally:
        results.engine.dispose()


def _stored_per_symbol(cluster: Cluster, run_id: str) -> dict[str, int]:
    """How many results the run has stored so far, per symbol (cheap enough to poll)."""
    results = ResultsStore.from_url(cluster.store_url, create=False)
    try:
        with results.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT symbol, count(*) FROM backtest_results WHERE dagster_run_id = :run "
                    "GROUP BY symbol"
                ),
                {"run": run_id},
            ).all()
    finally:
        results.engine.dispose()
    return {str(symbol): int(count) for symbol, count in rows}


def test_steps_run_on_both_workers_and_store_each_partition_once(cluster: Cluster) -> None:
    """Four parameter sets on two symbols, one partition per step, and each symbol optimised:
    ten steps over two workers."""
    slugs = SLUGS[:4]
    process = _launch(cluster, "spread", {"param_sets": slugs, "partitions_per_step": 1})
    run_id = _finish(cluster, process, "spread")

    ran = _step_workers(cluster, run_id)
    shard_steps = {step: hosts for step, hosts in ran.items() if step.startswith("backtest_shard")}
    assert len(shard_steps) == len(SYMBOLS) * len(slugs), ran
    # Every step ran once, and the steps were shared between the two workers.
    assert all(len(hosts) == 1 for hosts in shard_steps.values()), ran
    assert {hosts[0] for hosts in shard_steps.values()} == {w.hostname for w in cluster.workers}

    stored = _stored(cluster)
    assert len(stored) == len(SYMBOLS) * len(slugs)
    assert sorted(zip(stored["symbol"], stored["slug"], strict=True)) == sorted(
        (symbol, slug) for symbol in SYMBOLS for slug in slugs
    )
    assert set(stored["dagster_run_id"]) == {run_id}
    assert (stored["equity_points"] == stored["bars"]).all()
    # One materialisation per partition, recorded by the step that stored it.
    materialized = cluster.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    partitions: dict[str, list[str]] = {}
    for record in materialized:
        event = record.get_dagster_event()
        partitions.setdefault(event.asset_key.to_user_string(), []).append(str(event.partition))
    assert sorted(partitions["backtest_runs"]) == sorted(
        f"{slug}|{symbol}" for symbol in SYMBOLS for slug in slugs
    )
    # Each says which step computed it, and that step judged what it stored with the asset's
    # blocking checks: one passing evaluation of each check per shard step.
    backtests = [
        record.get_dagster_event()
        for record in materialized
        if record.get_dagster_event().asset_key.to_user_string() == "backtest_runs"
    ]
    for event in backtests:
        description = event.event_specific_data.materialization.description
        assert f"step {event.step_key} (run {run_id})" in description, description
    evaluations = [
        record.get_dagster_event()
        for record in cluster.instance.all_logs(
            run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
        )
    ]
    judged = sorted((event.step_key, event.event_specific_data.check_name) for event in evaluations)
    assert judged == sorted((step, check) for step in shard_steps for check in CHECK_NAMES), judged
    assert all(event.event_specific_data.passed for event in evaluations)
    # Each symbol optimised in a step of its own, its search stored once with the run id.
    assert sorted(partitions["parameter_optimization"]) == sorted(SYMBOLS)
    assert all(len(ran[f"optimize_symbol_step[{symbol}]"]) == 1 for symbol in SYMBOLS)
    results = ResultsStore.from_url(cluster.store_url, create=False)
    try:
        with results.engine.connect() as conn:
            searches = conn.execute(
                text("SELECT symbol, dagster_run_id FROM optimization_runs ORDER BY symbol")
            ).all()
    finally:
        results.engine.dispose()
    assert [tuple(row) for row in searches] == [(symbol, run_id) for symbol in sorted(SYMBOLS)]


def test_the_compose_health_check_pings_the_worker(cluster: Cluster) -> None:
    """docker-compose.yml's worker health check, run as compose runs it (with this test's worker
    names): it passes for a worker that is consuming and fails for one that is not there."""
    check = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["worker"]
    kind, command = check["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    env = {**cluster.env, "HOSTNAME": socket.gethostname()}

    def run(name: str) -> subprocess.CompletedProcess[str]:
        shell = command.replace("$$", "$").replace("worker@", f"{name}@")
        return subprocess.run(
            ["sh", "-c", shell.replace("--timeout 10", "--timeout 3")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    alive = run(cluster.workers[0].name)
    assert alive.returncode == 0, alive.stdout + alive.stderr
    assert run("absent").returncode != 0


@dataclass
class Killed:
    """A run during which a worker was killed mid-step, and what the store held right after."""

    run_id: str
    step: str
    victim: CeleryWorker
    left: pd.DataFrame


def _shard_symbol(step: str) -> str:
    return step.removeprefix("backtest_shard[").rsplit("_", 1)[0]


def _kill_mid_step(cluster: Cluster, label: str, kill: Callable[[CeleryWorker], None]) -> Killed:
    """Run the job with one step per symbol (24 partitions each) and ``kill`` the worker of a step
    once that step has stored some of its partitions but not all; wait for the run to succeed."""
    process = _launch(cluster, label, {"partitions_per_step": len(SLUGS), "optimize": False})
    try:
        run_id = _wait(cluster, f"run {label} to start", lambda: _run_id(cluster, label), 60, 0.2)

        def mid_step() -> tuple[str, CeleryWorker] | None:
            done = _stored_per_symbol(cluster, run_id)
            for step, hosts in _step_workers(cluster, run_id).items():
                if 0 < done.get(_shard_symbol(step), 0) < len(SLUGS):
                    return step, next(w for w in cluster.workers if w.hostname == hosts[-1])
            return None

        step, victim = _wait(cluster, "a step half-way through its partitions", mid_step, 60, 0.05)
        kill(victim)
        left = _stored(cluster)
        left = left[left["dagster_run_id"] == run_id]
        _finish(cluster, process, label)
    finally:
        if process.poll() is None:
            process.kill()
    return Killed(run_id, step, victim, left)


def _assert_exactly_once(cluster: Cluster, killed: Killed) -> None:
    """What the kill left was whole results only; the finished run stored every partition once."""
    left = killed.left
    # Killed mid-step: some of the step's partitions were stored, not all; each stored one whole.
    assert 0 < (left["symbol"] == _shard_symbol(killed.step)).sum() < len(SLUGS)
    assert (left["equity_points"] == left["bars"]).all()
    stored = _stored(cluster)
    assert sorted(zip(stored["symbol"], stored["slug"], strict=True)) == sorted(
        (s, slug) for s in SYMBOLS for slug in SLUGS
    )
    assert set(stored["dagster_run_id"]) == {killed.run_id}
    assert (stored["equity_points"] == stored["bars"]).all()
    # The trades stored before the kill are the trades the re-run stored again: they were whole.
    again = stored.set_index("run_key").loc[left["run_key"]]
    assert list(again["trades"]) == list(left["trades"])


def _took_again_at(cluster: Cluster, run_id: str, step: str) -> list[float]:
    """When workers took ``step`` (timestamps of its "Executing steps" engine events)."""
    return [
        record.timestamp
        for record in cluster.instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
        if record.get_dagster_event().step_key == step
        and "Celery worker" in (record.get_dagster_event().engine_event_data.metadata or {})
    ]


def test_a_step_whose_process_is_killed_goes_back_on_the_queue_at_once(cluster: Cluster) -> None:
    """The pool process running a step is SIGKILLed (the OOM killer's way): the worker rejects the
    task back onto the queue (task_reject_on_worker_lost) and it runs again well before the
    visibility timeout, on whichever worker is free."""
    killed = _kill_mid_step(cluster, "oom", CeleryWorker.kill_pool_process)

    hosts = _step_workers(cluster, killed.run_id)[killed.step]
    assert len(hosts) == 2 and hosts[0] == killed.victim.hostname
    # Taken again sooner than the visibility timeout could have handed it out.
    taken, retaken = _took_again_at(cluster, killed.run_id, killed.step)
    assert retaken - taken < VISIBILITY_TIMEOUT
    _assert_exactly_once(cluster, killed)


def test_a_worker_killed_mid_step_leaves_no_partial_result_and_its_step_runs_again(
    cluster: Cluster,
) -> None:
    """The whole worker is SIGKILLed, as if its machine died: nothing acknowledges or rejects the
    task, so the broker hands it to the other worker once the visibility timeout has passed."""
    killed = _kill_mid_step(cluster, "lost", CeleryWorker.kill)
    survivor = next(w for w in cluster.workers if w is not killed.victim)

    hosts = _step_workers(cluster, killed.run_id)[killed.step]
    assert hosts == [killed.victim.hostname, survivor.hostname]
    # Handed out again once the visibility timeout since its first delivery had passed.
    taken, retaken = _took_again_at(cluster, killed.run_id, killed.step)
    assert retaken - taken >= VISIBILITY_TIMEOUT - 2
    _assert_exactly_once(cluster, killed)
