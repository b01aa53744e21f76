"""Throwaway PostgreSQL and Redis servers for the test session.

Real servers, not mocks, started by the same code as ``cryptota stack``'s own
(:mod:`cryptota_pipelines.stack.servers`), but throwaway: on a free loopback port in a temporary
folder, without fsync, deleted on stop. Set ``CRYPTOTA_TEST_DATABASE_URL`` /
``CRYPTOTA_TEST_REDIS_URL`` to use servers you already run.

A cluster started with ``timescale=True`` preloads the timescaledb library (TimescaleDB refuses
``CREATE EXTENSION`` otherwise); :func:`timescale_library` tells whether the machine has it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptota_pipelines.stack.servers import (
    LocalPostgres,
    LocalRedis,
    free_port,
    timescale_library,
)

__all__ = [
    "PostgresServer",
    "RedisServer",
    "free_port",
    "start_postgres",
    "start_redis",
    "timescale_library",
]


@dataclass
class PostgresServer:
    cluster: LocalPostgres

    @property
    def url(self) -> str:
        """The ``cryptota`` database, which tests use as the admin connection."""
        return self.cluster.url("cryptota")

    def stop(self) -> None:
        self.cluster.stop()


def start_postgres(*, timescale: bool = False) -> PostgresServer:
    """A new cluster on a free port; with ``timescale`` it preloads timescaledb (telemetry off)."""
    root = Path(tempfile.mkdtemp(prefix="cryptota-pg-"))
    cluster = LocalPostgres(root=root, port=free_port(), timescale=timescale, throwaway=True)
    cluster.start().create_database("cryptota")
    return PostgresServer(cluster)


@dataclass
class RedisServer:
    server: LocalRedis

    @property
    def url(self) -> str:
        return self.server.url(0)

    def stop(self) -> None:
        self.server.stop()


def start_redis() -> RedisServer:
    root = Path(tempfile.mkdtemp(prefix="cryptota-redis-"))
    return RedisServer(LocalRedis(root=root, port=free_port(), throwaway=True).start())
