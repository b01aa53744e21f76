"""Session-wide fixtures: real PostgreSQL and Redis servers, stores on SQLite and PostgreSQL, and
a guard that keeps every test on loopback."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.services import (
    PostgresServer,
    RedisServer,
    start_postgres,
    start_redis,
    timescale_library,
)

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

    socket.socket.connect = guarded  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect = real_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own CRYPTOTA_HOME and no ambient CryptoTA/Binance configuration."""
    for name in list(os.environ):
        if name.startswith(("CRYPTOTA_", "BINANCE_")) and not name.startswith("CRYPTOTA_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CRYPTOTA_HOME", str(tmp_path / "home"))


TIMESCALE_SUITE = os.environ.get("CRYPTOTA_TEST_TIMESCALE") == "1"
"""``CRYPTOTA_TEST_TIMESCALE=1`` runs the whole suite's PostgreSQL tests on a cluster that preloads
TimescaleDB (the production store). By default the main cluster is plain PostgreSQL, even where the
extension is installed, and the TimescaleDB tests get a cluster of their own."""

HAS_TIMESCALE = timescale_library() is not None

TIMESCALE_FIXTURES = frozenset({"timescale_admin_url", "timescale_url"})
"""A test that asks for one of these needs the extension: it is marked ``timescaledb``, which the
default run (``make test``) deselects and ``make test-timescale`` selects. So what the default run
executes never depends on whether this machine happens to have TimescaleDB installed."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TIMESCALE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.timescaledb)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | str]:
    external = os.environ.get("CRYPTOTA_TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = start_postgres(timescale=TIMESCALE_SUITE)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_admin_url(postgres_server: PostgresServer | str) -> str:
    return postgres_server if isinstance(postgres_server, str) else postgres_server.url


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``admin_url``, dropped afterwards."""
    admin = make_url(admin_url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database on the throwaway server for one test."""
    with fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def timescale_admin_url(postgres_admin_url: str) -> Iterator[str]:
    """A server that preloads TimescaleDB: the suite's own under CRYPTOTA_TEST_TIMESCALE=1,
    otherwise a second throwaway cluster; skipped where the extension is not installed."""
    if TIMESCALE_SUITE:
        yield postgres_admin_url
        return
    if not HAS_TIMESCALE:
        pytest.skip("the timescaledb extension is not installed for this machine's PostgreSQL")
    server = start_postgres(timescale=True)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def timescale_url(timescale_admin_url: str) -> Iterator[str]:
    """A fresh, empty database on a TimescaleDB server for one test."""
    with fresh_database(timescale_admin_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


BACKENDS = [
    "sqlite",
    "postgres",
    *([] if TIMESCALE_SUITE else [pytest.param("timescaledb", marks=pytest.mark.timescaledb)]),
]
"""Every store backend. The TimescaleDB case is marked ``timescaledb`` (run by ``make
test-timescale``); under ``CRYPTOTA_TEST_TIMESCALE=1`` the ``postgres`` case is TimescaleDB."""


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite, on PostgreSQL and (where installed) on TimescaleDB."""
    fixture = {"sqlite": "sqlite_url", "postgres": "postgres_url", "timescaledb": "timescale_url"}
    return str(request.getfixturevalue(fixture[request.param]))


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
