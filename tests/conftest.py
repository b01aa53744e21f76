"""Session-wide fixtures: real PostgreSQL and Redis servers, stores on SQLite and PostgreSQL, and
a guard that keeps every test on loopback."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import PostgresServer, RedisServer, start_postgres, start_redis

_LOOPBACK = ("127.", "::1", "localhost")


@pytest.fixture(autouse=True, scope="session")
def _block_outside_network() -> Iterator[None]:
    """Tests reach only loopback: a connection anywhere else fails loudly, so nothing silently
    depends on the internet."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith(_LOOPBACK):
            raise ConnectionRefusedError(f"test tried to reach {host}: tests may use loopback only")
        return real_connect(self, address)

    socket.socket.connect = guarded  # type: ignore[method-assign]
    yield
    socket.socket.connect = real_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own CRYPTOTA_HOME and no ambient CryptoTA/Binance configuration."""
    for name in list(os.environ):
        if name.startswith(("CRYPTOTA_", "BINANCE_")) and not name.startswith("CRYPTOTA_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CRYPTOTA_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | str]:
    external = os.environ.get("CRYPTOTA_TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_admin_url(postgres_server: PostgresServer | str) -> str:
    return postgres_server if isinstance(postgres_server, str) else postgres_server.url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database on the throwaway server for one test."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(postgres_admin_url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | str]:
    external = os.environ.get("CRYPTOTA_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer | str) -> str:
    """The throwaway server's URL; the database is flushed before each test."""
    import redis

    url = redis_server if isinstance(redis_server, str) else redis_server.url
    redis.Redis.from_url(url).flushdb()
    return url
