"""TimescaleDB features of the candle store, used only where the extension can run.

Everything here is guarded by :func:`is_available`; on plain PostgreSQL and SQLite the store works
on ordinary tables and builds rollups by resampling on read. The SQL is TimescaleDB 2.28's
documented API: ``create_hypertable`` with ``by_range``; the columnstore (hypercore) settings
``ALTER TABLE ... SET (timescaledb.enable_columnstore, timescaledb.segmentby,
timescaledb.orderby)`` and ``add_columnstore_policy`` (the ``compress*`` names are deprecated
since 2.18); ``add_retention_policy`` / ``remove_retention_policy``; continuous aggregates with
real-time aggregation and ``refresh_continuous_aggregate``.

Setup is **state-driven and lock-light**: :func:`enable` reads the catalog first and changes only
what differs from the wanted state, so the ``ALTER TABLE`` (an ``AccessExclusiveLock``) runs once
per deployment, not on every connection, and a changed or removed retention setting replaces the
old policy instead of being ignored.

Correctness never depends on TimescaleDB's background jobs: the candle store refreshes the
aggregates itself after every write (:func:`refresh_aggregates`) and filters what it reads
(:func:`read_buckets_sql`), so a read returns exactly the buckets that resampling the stored 1m
candles gives (see ``docs/design.md``, "Candle reads").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection, text

log = logging.getLogger(__name__)

CHUNK_INTERVAL = "1 day"
COLUMNSTORE_AFTER = "7 days"
SEGMENT_BY = ("exchange", "symbol", "interval")
"""Every column of a series' identity: a read or an upsert touches one segment of a chunk."""
ORDER_BY = "open_time DESC"
AGGREGATE_VERSION_COLUMN = "last_open_time"
"""Newest column of the aggregates; a view without it predates the current definition and is
rebuilt (see :func:`enable`)."""

AGGREGATES: dict[str, tuple[str, str, str]] = {
    # interval: (bucket width, refresh policy start_offset, refresh policy schedule_interval)
    "15m": ("15 minutes", "3 days", "15 minutes"),
    "1h": ("1 hour", "3 days", "1 hour"),
    "4h": ("4 hours", "7 days", "1 hour"),
    "1d": ("1 day", "30 days", "1 day"),
}
"""Continuous aggregates built from the 1m candles. Their refresh policies only catch writes made
behind the store's back; the store refreshes the range it wrote itself."""


def aggregate_view(interval: str) -> str:
    """Name of the continuous aggregate holding ``interval`` candles (``candles_1h``...)."""
    return f"candles_{interval}"


def is_installed(conn: Connection) -> bool:
    """True when the timescaledb extension is created in this database."""
    return bool(
        conn.execute(
            text("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
        ).scalar_one()
    )


def is_available(conn: Connection) -> bool:
    """True when ``CREATE EXTENSION timescaledb`` can succeed here: the package is installed *and*
    the server preloads its library. A server with the package but without
    ``shared_preload_libraries = 'timescaledb'`` refuses the extension, so the store must take
    the plain-PostgreSQL path there (said once in the log)."""
    if is_installed(conn):
        return True
    packaged = conn.execute(
        text("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).scalar_one()
    if not packaged:
        return False
    preload = str(conn.execute(text("SELECT current_setting('shared_preload_libraries')")).scalar())
    if "timescaledb" not in [lib.strip().strip('"') for lib in preload.split(",")]:
        log.info(
            "the timescaledb package is installed but not in shared_preload_libraries: "
            "using plain PostgreSQL tables (rollups resampled on read)"
        )
        return False
    return True


# ========================================================================================= DDL
def hypertable_statement() -> str:
    """Turn ``candles`` into a hypertable of daily chunks, keeping rows already there."""
    return (
        "SELECT create_hypertable('candles', by_range('open_time', "
        f"INTERVAL '{CHUNK_INTERVAL}'), migrate_data => TRUE)"
    )


def columnstore_statements() -> list[str]:
    """Enable the columnstore segmented by series and ordered by time, and the policy moving
    chunks into it after :data:`COLUMNSTORE_AFTER`."""
    return [
        "ALTER TABLE candles SET (timescaledb.enable_columnstore = true, "
        f"timescaledb.segmentby = '{', '.join(SEGMENT_BY)}', timescaledb.orderby = '{ORDER_BY}')",
        "CALL remove_columnstore_policy('candles', if_exists => true)",
        f"CALL add_columnstore_policy('candles', after => INTERVAL '{COLUMNSTORE_AFTER}')",
    ]


def retention_statements(retention_days: int | None) -> list[str]:
    """Replace the retention policy by one dropping chunks older than ``retention_days`` (or by
    none): ``add_retention_policy`` cannot change an existing policy, so remove it first."""
    statements = ["SELECT remove_retention_policy('candles', if_exists => true)"]
    if retention_days:
        statements.append(
            f"SELECT add_retention_policy('candles', drop_after => INTERVAL '{int(retention_days)} "
            "days')"
        )
    return statements


def aggregate_statements(interval: str) -> list[str]:
    """The DDL of one continuous aggregate of 1m candles and its refresh policy.

    Real-time aggregation is on (``materialized_only = false``), so buckets newer than the last
    refresh are computed from the 1m candles at read time. ``last_open_time`` (the newest 1m
    candle of a bucket) is what tells a complete bucket from one still forming."""
    width, start_offset, schedule = AGGREGATES[interval]
    view = aggregate_view(interval)
    return [
        f"CREATE MATERIALIZED VIEW {view} "
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
        f"SELECT exchange, symbol, time_bucket(INTERVAL '{width}', open_time) AS open_time, "
        "first(open, open_time) AS open, max(high) AS high, min(low) AS low, "
        "last(close, open_time) AS close, sum(volume) AS volume, "
        "sum(quote_volume) AS quote_volume, sum(trades)::bigint AS trades, "
        "sum(taker_buy_base) AS taker_buy_base, sum(taker_buy_quote) AS taker_buy_quote, "
        f"max(open_time) AS {AGGREGATE_VERSION_COLUMN} "
        "FROM candles WHERE \"interval\" = '1m' "
        f"GROUP BY exchange, symbol, time_bucket(INTERVAL '{width}', open_time) "
        "WITH NO DATA",
        f"SELECT add_continuous_aggregate_policy('{view}', "
        f"start_offset => INTERVAL '{start_offset}', end_offset => INTERVAL '{width}', "
        f"schedule_interval => INTERVAL '{schedule}', if_not_exists => TRUE)",
    ]


# ======================================================================= state-driven setup
@dataclass(frozen=True)
class SetupReport:
    """What :func:`enable` changed; ``rebuilt_aggregates`` need a full refresh after commit."""

    changed: tuple[str, ...]
    rebuilt_aggregates: tuple[str, ...]


def _is_hypertable(conn: Connection) -> bool:
    return bool(
        conn.execute(
            text(
                "SELECT count(*) FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = current_schema() AND hypertable_name = 'candles'"
            )
        ).scalar_one()
    )


def _columnstore_settings(conn: Connection) -> tuple[str | None, str | None]:
    row = conn.execute(
        text(
            "SELECT segmentby, orderby "
            "FROM timescaledb_information.hypertable_columnstore_settings "
            "WHERE hypertable = 'candles'::regclass"
        )
    ).first()
    return (row[0], row[1]) if row else (None, None)


def _policy_config(conn: Connection, proc_name: str) -> dict[str, str] | None:
    row = conn.execute(
        text(
            "SELECT config FROM timescaledb_information.jobs WHERE proc_name = :proc "
            "AND hypertable_schema = current_schema() AND hypertable_name = 'candles'"
        ),
        {"proc": proc_name},
    ).first()
    return dict(row[0]) if row else None


def _interval_text(conn: Connection, value: str) -> str:
    """``value`` as PostgreSQL prints an interval, to compare with a policy's stored config."""
    return str(conn.execute(text("SELECT CAST(:v AS interval)::text"), {"v": value}).scalar_one())


def _aggregate_is_current(conn: Connection, view: str) -> bool | None:
    """None when ``view`` does not exist, else whether it has the current definition."""
    exists = conn.execute(
        text(
            "SELECT count(*) FROM timescaledb_information.continuous_aggregates "
            "WHERE view_schema = current_schema() AND view_name = :view"
        ),
        {"view": view},
    ).scalar_one()
    if not exists:
        return None
    has_column = conn.execute(
        text(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = :view AND column_name = :column"
        ),
        {"view": view, "column": AGGREGATE_VERSION_COLUMN},
    ).scalar_one()
    return bool(has_column)


def _series_columns_to_text(conn: Connection) -> list[str]:
    """Turn a store created with VARCHAR series columns (before TEXT was the schema) into TEXT, a
    catalog-only change in PostgreSQL. TimescaleDB refuses type changes once the columnstore is
    on; such a store keeps VARCHAR (only TimescaleDB's best-practice warning differs)."""
    varchar = (
        conn.execute(
            text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'candles' "
                "AND column_name IN ('exchange', 'symbol', 'interval') "
                "AND data_type = 'character varying' ORDER BY column_name"
            )
        )
        .scalars()
        .all()
    )
    if not varchar:
        return []
    if _columnstore_settings(conn)[0] is not None:
        log.warning(
            "candles.%s stay VARCHAR: TimescaleDB cannot change column types once the "
            "columnstore is enabled",
            ", ".join(varchar),
        )
        return []
    for column in varchar:
        conn.exec_driver_sql(f'ALTER TABLE candles ALTER COLUMN "{column}" TYPE text')
    return [f"{column}=text" for column in varchar]


def enable(conn: Connection, *, retention_days: int | None = None) -> SetupReport:
    """Bring the TimescaleDB features to the wanted state inside the caller's transaction,
    changing only what differs (see the module docstring). Safe to call on every start."""
    changed: list[str] = []
    rebuilt: list[str] = []
    if not is_installed(conn):
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
        changed.append("extension")
    if not _is_hypertable(conn):
        conn.exec_driver_sql(hypertable_statement())
        changed.append("hypertable")
    changed += _series_columns_to_text(conn)

    segment_by, order_by = _columnstore_settings(conn)
    wanted_policy = _interval_text(conn, COLUMNSTORE_AFTER)
    policy = _policy_config(conn, "policy_compression")
    if (
        segment_by != ",".join(SEGMENT_BY)
        or order_by != ORDER_BY
        or policy is None
        or _interval_text(conn, str(policy.get("compress_after"))) != wanted_policy
    ):
        for statement in columnstore_statements():
            conn.exec_driver_sql(statement)
        changed.append("columnstore")

    retention = _policy_config(conn, "policy_retention")
    current_days = _interval_text(conn, str(retention["drop_after"])) if retention else None
    wanted_days = _interval_text(conn, f"{int(retention_days)} days") if retention_days else None
    if current_days != wanted_days:
        for statement in retention_statements(retention_days):
            conn.exec_driver_sql(statement)
        changed.append(f"retention={retention_days or 'none'}")

    for interval in AGGREGATES:
        view = aggregate_view(interval)
        current = _aggregate_is_current(conn, view)
        if current:
            continue
        if current is False:  # an older definition: rebuild it from the 1m candles
            conn.exec_driver_sql(f"DROP MATERIALIZED VIEW {view}")
        for statement in aggregate_statements(interval):
            conn.exec_driver_sql(statement)
        rebuilt.append(view)
    if changed or rebuilt:
        log.info("TimescaleDB setup changed: %s", ", ".join([*changed, *(f"{v}" for v in rebuilt)]))
    return SetupReport(tuple(changed), tuple(rebuilt))


# ================================================================================ refresh
def refresh_aggregates(
    conn: Connection,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    *,
    views: tuple[str, ...] = (),
) -> None:
    """Refresh the continuous aggregates (``views``, default all) over ``[start, end)`` widened
    to whole UTC days (None: unbounded): the widest bucket (1d) holding a written candle is then
    inside the window, and TimescaleDB refreshes only whole buckets. Must run outside a
    transaction block, as ``refresh_continuous_aggregate`` requires."""
    day = pd.Timedelta(days=1)
    start = start.floor(day) if start is not None else None
    end = end.ceil(day) if end is not None else None
    bounds = ["NULL" if ts is None else f"'{ts.isoformat()}'::timestamptz" for ts in (start, end)]
    for view in views or tuple(aggregate_view(i) for i in AGGREGATES):
        conn.exec_driver_sql(
            f"CALL refresh_continuous_aggregate('{view}', {bounds[0]}, {bounds[1]})"
        )


# ================================================================================== reads
def read_buckets_sql(columns: str) -> str:
    """Binary-COPY query of one aggregate's buckets lying wholly inside ``[start, end)``, for
    parameters (exchange, symbol, start, end − width); ``{view}`` is filled in by the caller. A
    bucket that would hold candles after ``end`` is never returned (no look-ahead)."""
    return (
        f"COPY (SELECT open_time, {columns}, {AGGREGATE_VERSION_COLUMN} FROM {{view}} "
        "WHERE exchange = %s AND symbol = %s AND open_time >= %s AND open_time <= %s "
        "ORDER BY open_time) TO STDOUT (FORMAT binary)"
    )
