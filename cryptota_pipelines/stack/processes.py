"""The Dagster processes of a deployment and how to start and stop them cleanly.

Each service runs in a session (process group) of its own, so that stopping it reaches its
children too: ``dagster code-server`` runs its definitions in an ``api grpc`` child, and
``dagster-celery worker start`` runs ``celery worker`` with its pool processes.

Why the interrupt disposition matters: Dagster maps SIGTERM to whatever SIGINT does in the
process. A process started from a non-interactive shell in the background (``cmd &``) inherits
SIGINT *ignored*, so ``dagster code-server`` then ignores SIGTERM as well and only SIGKILL ends
it. We start every service with SIGINT at its default, whatever our own parent left us.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

VENV_BIN = Path(sys.executable).parent
"""The scripts of the Python environment we run in (dagster, dagster-webserver, ...)."""

LOCATION_NAME = "cryptota_pipelines"
"""The code location's one name: the workspace files, the code server and ``[tool.dg]``."""

DEFINITIONS_MODULE = "cryptota_pipelines.definitions"


def interruptible_children() -> None:
    """Make children start with SIGINT at its default (see the module docstring). Only the main
    thread may change a signal disposition; elsewhere there is nothing to restore from."""
    if (
        signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        and threading.current_thread() is threading.main_thread()
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class Service:
    """One long-running process: its command, environment, folder and log file."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    stop_timeout: float = 30.0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.cwd / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        interruptible_children()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM to the whole group, then SIGKILL to what is left of it after
        ``stop_timeout``; returns the main process's exit status."""
        if self.process is None:
            return None
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=self.stop_timeout)
        deadline = time.monotonic() + self.stop_timeout
        while group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.2)  # children finishing their own shutdown
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        return self.process.wait(timeout=10)


def group_alive(group: int) -> bool:
    """True while any process of process group ``group`` exists."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def code_server_argv(port: int, host: str = "127.0.0.1") -> list[str]:
    """The user-code gRPC server, registered under :data:`LOCATION_NAME` (without
    ``--location-name`` it calls itself after the module, and the webserver and daemon warn on
    every request that the workspace's name differs)."""
    return [
        sys.executable, "-m", "dagster", "code-server", "start",
        "-h", host, "-p", str(port),
        "-m", DEFINITIONS_MODULE,
        "--location-name", LOCATION_NAME,
        "--use-python-environment-entry-point",
    ]  # fmt: skip


def daemon_argv(workspace: Path) -> list[str]:
    return [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(workspace)]


def webserver_argv(workspace: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    return [str(VENV_BIN / "dagster-webserver"), "-h", host, "-p", str(port), "-w", str(workspace)]


def celery_worker_argv(config_yaml: Path, name: str, concurrency: int = 1) -> list[str]:
    """``dagster-celery worker start`` on the executor's config block (celery.yaml)."""
    return [
        str(VENV_BIN / "dagster-celery"), "worker", "start",
        "-A", "dagster_celery.app", "-y", str(config_yaml), "-n", name,
        "--", f"--concurrency={concurrency}", "--without-mingle", "--without-gossip",
    ]  # fmt: skip


def grpc_workspace(port: int, host: str = "127.0.0.1") -> str:
    """A workspace file's text: the code location on the gRPC server at ``host:port``."""
    return (
        "load_from:\n"
        "  - grpc_server:\n"
        f"      host: {host}\n"
        f"      port: {port}\n"
        f"      location_name: {LOCATION_NAME}\n"
    )


def grpc_ready(port: int, env: Mapping[str, str]) -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "api", "grpc-health-check", "-p", str(port)],
        env=dict(env),
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


def http_ready(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
