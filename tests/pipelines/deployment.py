"""A real, local Dagster deployment for end-to-end tests: ``cryptota stack``'s own supervisor
(:class:`~cryptota_pipelines.stack.stack.Stack`) on a temporary folder, so the tests run exactly
what an operator runs: the production ``dagster.yaml``, the user-code gRPC server, the daemon, the
webserver and Celery workers, each a real process on a free loopback port. Dagster's storage and
the candle store are the suite's throwaway PostgreSQL; Redis is the stack's own.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptota_core.settings import load_settings
from cryptota_pipelines.stack.processes import LOCATION_NAME, Service, wait_for
from cryptota_pipelines.stack.stack import Stack, StackSpec, dagster_pg_env
from tests.services import free_port

REPO = Path(__file__).resolve().parents[2]
LOCATION = LOCATION_NAME
REPOSITORY = "__repository__"

__all__ = ["LOCATION", "REPO", "REPOSITORY", "Deployment", "dagster_deployment", "dagster_pg_env",
           "wait_for"]  # fmt: skip


@dataclass
class Deployment:
    """Handles on the running deployment."""

    stack: Stack

    @property
    def home(self) -> Path:
        return self.stack.dagster_home

    @property
    def env(self) -> dict[str, str]:
        return self.stack.env

    @property
    def web_port(self) -> int:
        return self.stack.spec.web_port

    @property
    def processes(self) -> dict[str, Service]:
        return {service.name: service for service in self.stack.services}

    @property
    def url(self) -> str:
        return self.stack.web_url

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
        service = self.processes.get(name)
        return service.log() if service else ""


@contextmanager
def dagster_deployment(
    root: Path, *, storage_url: str, cryptota_env: dict[str, str], workers: int = 0
) -> Iterator[Deployment]:
    """The stack under ``root`` with Dagster's storage in ``storage_url`` and the candle store
    at ``cryptota_env["CRYPTOTA_DATABASE_URL"]``; ``workers`` Celery workers."""
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
        **dagster_pg_env(storage_url),
        **cryptota_env,
    }
    settings = load_settings(database_url=cryptota_env["CRYPTOTA_DATABASE_URL"])
    spec = StackSpec(
        root=root / "stack",
        workers=workers,
        web_port=free_port(),
        grpc_port=free_port(),
        redis_port=free_port(),
    )
    stack = Stack(spec=spec, settings=settings, environ=environ)
    stack.start()
    try:
        yield Deployment(stack)
    finally:
        stack.stop()
