"""TimescaleDB features of the candle store, used only where the extension exists.

Everything here is guarded by :func:`is_available`; on plain PostgreSQL and SQLite the store works
on ordinary tables and builds rollups by resampling on read. The SQL follows TimescaleDB's
documented API (``create_hypertable`` with ``by_range``, ``ALTER TABLE ... SET
(timescaledb.compress ...)``, ``add_compression_policy``, ``add_retention_policy``, continuous
aggregates with ``add_continuous_aggregate_policy``).
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text

log = logging.getLogger(__name__)

AGGREGATES: dict[str, tuple[str, str, str]] = {
    # interval: (bucket width, refresh start_offset, refresh schedule_interval)
    "15m": ("15 minutes", "3 days", "15 minutes"),
    "1h": ("1 hour", "3 days", "1 hour"),
    "4h": ("4 hours", "7 days", "1 hour"),
    "1d": ("1 day", "30 days", "1 day"),
}
"""Continuous aggregates built from the 1m candles, and how their refresh policy runs."""


def aggregate_view(interval: str) -> str:
    """Name of the continuous aggregate holding ``interval`` candles (``candles_1h``...)."""
    return f"candles_{interval}"


def is_available(conn: Connection) -> bool:
    """True when the server can load the timescaledb extension."""
    return bool(
        conn.execute(
            text("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
        ).scalar_one()
    )


def is_installed(conn: Connection) -> bool:
    """True when the timescaledb extension is created in this database."""
    return bool(
        conn.execute(
            text("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
        ).scalar_one()
    )


def hypertable_statements(retention_days: int | None) -> list[str]:
    """The DDL that turns ``candles`` into a compressed hypertable (idempotent)."""
    statements = [
        "CREATE EXTENSION IF NOT EXISTS timescaledb",
        "SELECT create_hypertable('candles', by_range('open_time', INTERVAL '1 day'), "
        "if_not_exists => TRUE, migrate_data => TRUE)",
        "ALTER TABLE candles SET (timescaledb.compress, "
        "timescaledb.compress_orderby = 'open_time DESC', "
        "timescaledb.compress_segmentby = 'symbol')",
        "SELECT add_compression_policy('candles', compress_after => INTERVAL '7 days', "
        "if_not_exists => TRUE)",
    ]
    if retention_days:
        statements.append(
            "SELECT add_retention_policy('candles', "
            f"drop_after => INTERVAL '{int(retention_days)} days', if_not_exists => TRUE)"
        )
    return statements


def aggregate_statements(interval: str) -> list[str]:
    """The DDL of one continuous aggregate of 1m candles and its refresh policy."""
    width, start_offset, schedule = AGGREGATES[interval]
    view = aggregate_view(interval)
    return [
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} WITH (timescaledb.continuous) AS "
        f"SELECT exchange, symbol, time_bucket(INTERVAL '{width}', open_time) AS open_time, "
        "first(open, open_time) AS open, max(high) AS high, min(low) AS low, "
        "last(close, open_time) AS close, sum(volume) AS volume, "
        "sum(quote_volume) AS quote_volume, sum(trades)::bigint AS trades, "
        "sum(taker_buy_base) AS taker_buy_base, sum(taker_buy_quote) AS taker_buy_quote "
        "FROM candles WHERE \"interval\" = '1m' "
        f"GROUP BY exchange, symbol, time_bucket(INTERVAL '{width}', open_time) "
        "WITH NO DATA",
        f"SELECT add_continuous_aggregate_policy('{view}', "
        f"start_offset => INTERVAL '{start_offset}', end_offset => INTERVAL '{width}', "
        f"schedule_interval => INTERVAL '{schedule}', if_not_exists => TRUE)",
    ]


def enable(conn: Connection, *, retention_days: int | None = None) -> None:
    """Apply every TimescaleDB feature to the store (safe to repeat)."""
    for statement in hypertable_statements(retention_days):
        conn.exec_driver_sql(statement)
    for interval in AGGREGATES:
        for statement in aggregate_statements(interval):
            conn.exec_driver_sql(statement)
    log.info("TimescaleDB features enabled on candles (hypertable, compression, aggregates)")


def refresh_aggregates(conn: Connection, start: str, end: str) -> None:
    """Refresh every continuous aggregate over ``[start, end)`` (ISO timestamps). Must run outside
    a transaction block, as TimescaleDB requires for ``refresh_continuous_aggregate``."""
    for interval in AGGREGATES:
        conn.exec_driver_sql(
            f"CALL refresh_continuous_aggregate('{aggregate_view(interval)}', "
            f"'{start}'::timestamptz, '{end}'::timestamptz)"
        )
