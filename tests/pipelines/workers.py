"""Real Celery workers for the distributed tests: ``dagster-celery worker start`` processes, each
in a process group of its own (the ``dagster-celery`` launcher, the ``celery`` main process and
its pool child), so a test can SIGKILL one whole worker as a lost machine would die, and the
teardown stops every worker it started by its group id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from celery import Celery

VENV_BIN = Path(sys.executable).parent


@dataclass
class CeleryWorker:
    """One worker: ``name@<this host>`` to Celery, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def hostname(self) -> str:
        """The node name the worker reports (``-n name@%h``), as Dagster's step events show it."""
        return f"{self.name}@{socket.gethostname()}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole worker at once, as if its machine died: nothing gets to clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def kill_pool_process(self) -> None:
        """SIGKILL only the pool process running the step (as the OOM killer would), leaving the
        worker's main process alive to notice."""
        (main,) = _children(self.process.pid)  # dagster-celery's launcher runs `celery worker`
        pool = _children(main)
        assert pool, f"worker {self.name} has no pool process"
        for pid in pool:
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM to the group), then SIGKILL whatever is left of the group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def write_worker_config(path: Path, executor_config: Mapping[str, Any]) -> Path:
    """A ``-y`` file for ``dagster-celery worker start``: the executor's config block."""
    path.write_text(yaml.safe_dump({"execution": {"config": dict(executor_config)}}))
    return path


def start_celery_worker(
    name: str, config_yaml: Path, env: Mapping[str, str], log_dir: Path
) -> CeleryWorker:
    """``dagster-celery worker start`` with one pool process, in a new process group."""
    log_path = log_dir / f"worker-{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            str(VENV_BIN / "dagster-celery"),
            "worker",
            "start",
            "-A",
            "dagster_celery.app",
            "-y",
            str(config_yaml),
            "-n",
            name,
            "--",
            "--concurrency=1",
            "--without-mingle",
            "--without-gossip",
        ],
        env=dict(env),
        cwd=log_dir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return CeleryWorker(name=name, process=process, log_path=log_path)


def answering(broker_url: str, workers: list[CeleryWorker]) -> bool:
    """True when every worker answers a ping through the broker (it is consuming)."""
    app = Celery(broker=broker_url)
    try:
        replies = app.control.ping(destination=[w.hostname for w in workers], timeout=1.0)
    finally:
        app.close()
    answered = {name for reply in replies for name in reply}
    return answered >= {w.hostname for w in workers}
