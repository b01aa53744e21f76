"""The database schema (SQLAlchemy 2 Core): one definition for SQLite and PostgreSQL.

Times are UTC. On PostgreSQL they are ``timestamptz`` (what TimescaleDB partitions on); on SQLite
they are integer epoch milliseconds, which sort, compare and round-trip exactly, where SQLite's
text datetimes would not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
)
from sqlalchemy.types import TypeDecorator


class EpochMillis(TypeDecorator[datetime]):
    """A UTC datetime stored as integer epoch milliseconds (used on SQLite)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if isinstance(value, int):
            return value
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return round(value.timestamp() * 1000)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return datetime.fromtimestamp(value / 1000, tz=UTC)


UtcDateTime = DateTime(timezone=True).with_variant(EpochMillis(), "sqlite")
"""Column type for every UTC time in the schema."""

metadata = MetaData()

candles = Table(
    "candles",
    metadata,
    Column("exchange", String(16), nullable=False),
    Column("symbol", String(20), nullable=False),
    Column("interval", String(8), nullable=False),
    Column("open_time", UtcDateTime, nullable=False),
    Column("open", Float(53), nullable=False),
    Column("high", Float(53), nullable=False),
    Column("low", Float(53), nullable=False),
    Column("close", Float(53), nullable=False),
    Column("volume", Float(53), nullable=False),
    Column("quote_volume", Float(53), nullable=False),
    Column("trades", BigInteger, nullable=False),
    Column("taker_buy_base", Float(53), nullable=False),
    Column("taker_buy_quote", Float(53), nullable=False),
    Column("ingested_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    PrimaryKeyConstraint("exchange", "symbol", "interval", "open_time", name="candles_pkey"),
)
"""One row per candle. ``exchange`` keeps real (``binance``) and simulated (``synthetic``) data
apart; the primary key makes every write an idempotent upsert."""

candle_gaps = Table(
    "candle_gaps",
    metadata,
    Column("exchange", String(16), nullable=False),
    Column("symbol", String(20), nullable=False),
    Column("interval", String(8), nullable=False),
    Column("gap_start", UtcDateTime, nullable=False),
    Column("gap_end", UtcDateTime, nullable=False),
    Column("missing", Integer, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    PrimaryKeyConstraint("exchange", "symbol", "interval", "gap_start", name="candle_gaps_pkey"),
)
"""Gaps found at ingestion: real exchange outages are recorded, never filled with invented
candles. ``gap_start``/``gap_end`` are the first and last missing open times."""

Index("candle_gaps_range", candle_gaps.c.exchange, candle_gaps.c.symbol, candle_gaps.c.gap_end)
