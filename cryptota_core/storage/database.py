"""Connecting to the store: URL normalisation, engine options and error translation."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from cryptota_core.errors import ConfigError, StorageError
from cryptota_core.redact import mask_url_password

log = logging.getLogger(__name__)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (``postgresql://`` means
    psycopg2 to SQLAlchemy, which we do not ship)."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise ConfigError(
            "CRYPTOTA_DATABASE_URL is not a database URL: use "
            "postgresql+psycopg://user:pass@host/db or sqlite:///path/cryptota.db"
        ) from e
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() != "sqlite":
        raise ConfigError(
            f"unsupported database {parsed.get_backend_name()!r} in CRYPTOTA_DATABASE_URL: "
            "use PostgreSQL (TimescaleDB) or SQLite"
        )
    return parsed.render_as_string(hide_password=False)


def safe_url(engine_or_url: Engine | str) -> str:
    """The URL with the password masked, for messages and logs."""
    if isinstance(engine_or_url, Engine):
        engine_or_url = engine_or_url.url.render_as_string(hide_password=False)
    return mask_url_password(engine_or_url)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the Dagster UI, a CLI) work while a run writes; NORMAL is durable in WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_store_engine(url: str, *, pool: bool = True) -> Engine:
    """Create the SQLAlchemy engine for ``url`` and check that the database answers, turning an
    unreachable server into one :class:`StorageError` line (password masked)."""
    url = normalise_url(url)
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["poolclass"] = NullPool
    else:
        kwargs["pool_pre_ping"] = True
        # JIT off: the planner's row estimates over hypertable joins are huge, so PostgreSQL JIT-
        # compiled our simple range statements and spent seconds doing so (an unchanged re-upsert
        # of a year over the columnstore: 19.5 s with JIT, 1.5 s without).
        kwargs["connect_args"] = {"connect_timeout": 10, "options": "-c jit=off"}
        if not pool:
            kwargs["poolclass"] = NullPool
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    with translate_db_errors(engine), engine.connect():
        pass
    return engine


CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
"""SQLSTATEs that mean "the server cannot be reached or took the connection away": class 08
(connection exception), admin/crash shutdown, "cannot connect now", too many connections."""


def is_connection_failure(error: DBAPIError) -> bool:
    """True when ``error`` means the database could not be reached or dropped the connection,
    as opposed to a server refusing one statement (a constraint, a lock timeout, a limit)."""
    if error.connection_invalidated:
        return True
    if isinstance(error.orig, sqlite3.Error):
        return "unable to open database file" in str(error.orig)
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is None:
        # psycopg gives no SQLSTATE when it never got an answer (refused, unknown host, timeout).
        return isinstance(error, OperationalError)
    return str(sqlstate).startswith(CONNECTION_SQLSTATES)


@contextmanager
def translate_db_errors(engine: Engine) -> Iterator[None]:
    """Re-raise driver errors as one-line :class:`StorageError` errors with the masked URL: an
    unreachable server says so and points at CRYPTOTA_DATABASE_URL; any other database error
    says what the server refused (first line of its message, SQLSTATE), never blaming the URL."""
    try:
        yield
    except DBAPIError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        if is_connection_failure(e):
            raise StorageError(
                f"cannot reach the database at {safe_url(engine)}: {reason}; "
                "check CRYPTOTA_DATABASE_URL and that the server is running"
            ) from None
        sqlstate = getattr(e.orig, "sqlstate", None)
        code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
        raise StorageError(f"the database at {safe_url(engine)} refused: {reason}{code}") from e
