"""A real, local Dagster deployment for end-to-end tests: the production ``dagster.yaml`` in a
temporary ``DAGSTER_HOME`` (storage in a throwaway PostgreSQL database through the same
``DAGSTER_PG_*`` variables docker-compose sets), a user-code gRPC server, the daemon and the
webserver, each a real process on a free loopback port, stopped (by process id) on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from tests.services import free_port

REPO = Path(__file__).resolve().parents[2]
LOCATION = "cryptota_pipelines"
REPOSITORY = "__repository__"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def dagster_pg_env(storage_url: str) -> dict[str, str]:
    """The ``DAGSTER_PG_*`` variables the production dagster.yaml reads, for ``storage_url``."""
    url = make_url(storage_url)
    return {
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username or "",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database or "",
    }


@dataclass
class Deployment:
    """Handles on the running deployment."""

    home: Path
    env: dict[str, str]
    grpc_port: int
    web_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL request to the webserver; raise on GraphQL errors."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as e:  # GraphQL errors come back with a 4xx/5xx status
            payload = json.loads(e.read() or b"{}") or {"errors": [str(e)]}
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return dict(payload["data"])

    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _start(deployment: Deployment, name: str, args: list[str]) -> None:
    log = open(deployment.home / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    deployment.processes[name] = subprocess.Popen(
        args, cwd=deployment.home, env=deployment.env, stdout=log, stderr=subprocess.STDOUT
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _web_ready(deployment: Deployment) -> bool:
    try:
        with urllib.request.urlopen(f"{deployment.url}/server_info", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _grpc_ready(deployment: Deployment) -> bool:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "api",
            "grpc-health-check",
            "-p",
            str(deployment.grpc_port),
        ],
        env=deployment.env,
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


@contextmanager
def dagster_deployment(
    root: Path, *, storage_url: str, cryptota_env: dict[str, str]
) -> Iterator[Deployment]:
    """Run code server, daemon and webserver against a fresh ``DAGSTER_HOME`` under ``root``
    whose dagster.yaml is the repository's own; Dagster storage in ``storage_url``."""
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    grpc_port, web_port = free_port(), free_port()
    (home / "workspace.yaml").write_text(
        "load_from:\n"
        "  - grpc_server:\n"
        "      host: 127.0.0.1\n"
        f"      port: {grpc_port}\n"
        f"      location_name: {LOCATION}\n"
    )
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
        "DAGSTER_HOME": str(home),
        **dagster_pg_env(storage_url),
        **cryptota_env,
    }
    deployment = Deployment(home=home, env=env, grpc_port=grpc_port, web_port=web_port)
    try:
        _start(
            deployment,
            "user-code",
            [
                sys.executable,
                "-m",
                "dagster",
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                str(grpc_port),
                "-m",
                "cryptota_pipelines.definitions",
                "--use-python-environment-entry-point",
            ],
        )
        wait_for("the user-code server to answer", lambda: _grpc_ready(deployment), 120, 1.0)
        workspace = str(home / "workspace.yaml")
        _start(deployment, "daemon", [f"{venv_bin}/dagster-daemon", "run", "-w", workspace])
        _start(
            deployment,
            "webserver",
            [
                f"{venv_bin}/dagster-webserver",
                "-h",
                "127.0.0.1",
                "-p",
                str(web_port),
                "-w",
                workspace,
            ],
        )
        wait_for("the webserver to answer", lambda: _web_ready(deployment), 120)
        yield deployment
    finally:
        for process in reversed(list(deployment.processes.values())):
            _stop(process)
