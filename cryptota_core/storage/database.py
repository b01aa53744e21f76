"""Connecting to the store: URL normalisation, engine options and error translation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from cryptota_core.errors import ConfigError, StorageError

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
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.render_as_string(hide_password=True)


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
        kwargs["connect_args"] = {"connect_timeout": 10}
        if not pool:
            kwargs["poolclass"] = NullPool
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    with translate_db_errors(engine), engine.connect():
        pass
    return engine


@contextmanager
def translate_db_errors(engine: Engine) -> Iterator[None]:
    """Re-raise driver errors as :class:`StorageError` with the masked URL and the first line of
    the server's message."""
    try:
        yield
    except OperationalError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        raise StorageError(
            f"cannot reach the database at {safe_url(engine)}: {reason}; "
            "check CRYPTOTA_DATABASE_URL and that the server is running"
        ) from None
    except DBAPIError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        raise StorageError(f"database error at {safe_url(engine)}: {reason}") from e
