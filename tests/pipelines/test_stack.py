"""``cryptota stack`` as an operator runs it, on a machine without Docker: its own PostgreSQL and
Redis, the user-code server, daemon, webserver and a Celery worker; the operator's own ``dagster``
commands reach it through the files it writes; SIGTERM stops every process it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cryptota_core.errors import CryptotaError
from cryptota_core.market.frame import SeriesKey
from cryptota_core.storage.candle_store import CandleStore
from cryptota_pipelines.defs.ingestion.sensors import NEW_SYMBOL_DAYS
from cryptota_pipelines.stack.processes import LOCATION_NAME, group_alive, wait_for
from cryptota_pipelines.stack.servers import port_open
from tests.pipelines.deployment import REPO
from tests.services import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

VENV_BIN = Path(sys.executable).parent
START_TIMEOUT = 240
RUN_TIMEOUT = 240


def _env(root: Path) -> dict[str, str]:
    return {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
        "CRYPTOTA_HOME": str(root / "home"),
        "CRYPTOTA_SOURCE": "synthetic",
        "CRYPTOTA_SYMBOLS": "BTCUSDT",
    }


class RunningStack:
    def __init__(self, root: Path, process: subprocess.Popen[bytes], ports: dict[str, int]):
        self.root, self.process, self.ports = root, process, ports

    @property
    def folder(self) -> Path:
        return self.root / "stack"

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.folder / "stack.json").read_text()))

    def output(self) -> str:
        return (self.root / "stack.out").read_text(errors="replace")

    def logs(self) -> str:
        parts = [f"----- stack -----\n{self.output()}"]
        for log in sorted((self.folder / "logs").glob("*.log")):
            parts.append(f"----- {log.name} -----\n{log.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    # As root PostgreSQL runs as the postgres user, who must reach the folder (not pytest's
    # root-only temporary folder).
    root = Path(tempfile.mkdtemp(prefix="cryptota-stack-test-"))
    root.chmod(0o755)
    ports = {name: free_port() for name in ("port", "grpc-port", "postgres-port", "redis-port")}
    flags = [arg for name, port in ports.items() for arg in (f"--{name}", str(port))]
    with open(root / "stack.out", "wb") as out:
        process = subprocess.Popen(
            [str(VENV_BIN / "cryptota"), "stack", f"--dir={root / 'stack'}", "--workers=1", *flags],
            env=_env(root),
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = RunningStack(root, process, ports)
    try:
        state = root / "stack" / "stack.json"
        wait_for("the stack to come up", lambda: state.exists() or process.poll() is not None,
                 START_TIMEOUT, 1.0)  # fmt: skip
        assert process.poll() is None, running.logs()
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _operator(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    """A command in another shell after ``set -a; . stack.env; set +a``, as the stack says."""
    script = f'set -a; . "{stack.folder}/stack.env"; set +a; exec "$@"'
    return subprocess.run(
        ["bash", "-c", script, "operator", *args],
        env=_env(stack.root),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_stack_serves_one_location_under_one_name(stack: RunningStack) -> None:
    state = stack.state()
    assert set(state["services"]) == {"user-code", "daemon", "webserver", "worker-1"}
    assert state["servers"]["postgres"].endswith(f":{stack.ports['postgres-port']}/cryptota")
    assert state["candle_store"].endswith("/cryptota")
    assert state["celery_broker"] == f"redis://127.0.0.1:{stack.ports['redis-port']}/1"
    workspace = Path(state["workspace"]).read_text()
    assert f"port: {stack.ports['grpc-port']}" in workspace
    assert f"location_name: {LOCATION_NAME}" in workspace
    # The code server registers under the workspace's name: no mismatch warning anywhere.
    assert "does not match the name" not in stack.logs()
    assert (stack.folder / "stack.env").stat().st_mode & 0o077 == 0


def test_operator_commands_reach_the_stack_through_its_files(stack: RunningStack) -> None:
    listed = _operator(stack, "bash", "-c", 'dagster sensor list -w "$DAGSTER_WORKSPACE"')
    assert listed.returncode == 0, listed.stderr + stack.logs()
    assert "symbol_universe_sensor" in listed.stdout
    started = _operator(
        stack, "bash", "-c", 'dagster sensor start symbol_universe_sensor -w "$DAGSTER_WORKSPACE"'
    )
    assert started.returncode == 0, started.stderr
    assert "Started sensor symbol_universe_sensor" in started.stdout

    # The daemon ticks the sensor, the queue runs the new symbol's ingestion, the candles land
    # in the stack's own PostgreSQL.
    store = CandleStore.from_url(stack.state()["candle_store"], create=False)
    series = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1m")
    end = pd.Timestamp.now(tz="UTC").floor("D")
    start = end - pd.Timedelta(days=NEW_SYMBOL_DAYS)

    def ingested() -> bool:
        try:
            return store.count(series, start, end) == NEW_SYMBOL_DAYS * 1440
        except CryptotaError:  # the table appears with the first run
            return False

    try:
        wait_for("the sensor's ingestion run", ingested, RUN_TIMEOUT, 2.0)
    except TimeoutError:
        print(stack.logs())
        raise
    finally:
        store.engine.dispose()


def test_sigterm_stops_every_process_of_the_stack(stack: RunningStack) -> None:
    state = stack.state()
    groups = list(state["services"].values())
    assert all(group_alive(group) for group in groups)
    stack.process.send_signal(signal.SIGTERM)
    status = stack.process.wait(timeout=120)
    assert status == 0, stack.logs()
    assert [name for name, group in state["services"].items() if group_alive(group)] == []
    assert not port_open(stack.ports["postgres-port"])
    assert not port_open(stack.ports["redis-port"])
    assert not port_open(stack.ports["port"]) and not port_open(stack.ports["grpc-port"])
    assert not (stack.folder / "stack.json").exists()
    assert "stack up" in stack.output()
