"""The database schema (SQLAlchemy 2 Core): one definition for SQLite and PostgreSQL.

Times are UTC. On PostgreSQL they are ``timestamptz`` (what TimescaleDB partitions on); on SQLite
they are integer epoch milliseconds, which sort, compare and round-trip exactly, where SQLite's
text datetimes would not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
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


def utc_now() -> datetime:
    """The current UTC time, set by Python rather than the server: SQLite's CURRENT_TIMESTAMP is
    text, which an epoch-millisecond column cannot hold."""
    return datetime.now(tz=UTC)


metadata = MetaData()

candles = Table(
    "candles",
    metadata,
    # TEXT, not VARCHAR(n): TimescaleDB 2.28 segments the columnstore by these columns and warns
    # that varchar "does not follow best practices"; lengths are enforced by SeriesKey anyway.
    Column("exchange", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("interval", Text, nullable=False),
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
    Column("ingested_at", UtcDateTime, nullable=False, default=utc_now),
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
    Column("recorded_at", UtcDateTime, nullable=False, default=utc_now),
    PrimaryKeyConstraint("exchange", "symbol", "interval", "gap_start", name="candle_gaps_pkey"),
)
"""Gaps found at ingestion: real exchange outages are recorded, never filled with invented
candles. ``gap_start``/``gap_end`` are the first and last missing open times."""

Index("candle_gaps_range", candle_gaps.c.exchange, candle_gaps.c.symbol, candle_gaps.c.gap_end)


# ==================================================================================== results
# Every result row keeps what produced it — strategy, params, symbol, interval, data window,
# candle fingerprint, engine, code version and the Dagster run id — so any number on a
# leaderboard can be traced back to its inputs (DESIGN §3). ``created_at`` is set by the Python
# default, never by the server: on SQLite ``CURRENT_TIMESTAMP`` is text, which the epoch-ms
# column type could not read back.


AutoId = BigInteger().with_variant(Integer(), "sqlite")
"""Surrogate key type: ``bigint`` identity on PostgreSQL; on SQLite only ``INTEGER PRIMARY KEY``
is the auto-incrementing rowid alias."""

SLUG_LENGTH = 200
RUN_KEY_LENGTH = 64


def _series_columns() -> list[Column[Any]]:
    """Which series and strategy a result row is about (fresh Column objects per table)."""
    return [
        Column("exchange", String(16), nullable=False),
        Column("symbol", String(20), nullable=False),
        Column("interval", String(8), nullable=False),
        Column("strategy", String(64), nullable=False),
    ]


def _provenance_columns() -> list[Column[Any]]:
    """What a result was computed from and by: the candles' fingerprint, the code version and
    the Dagster run (DESIGN §3: every number traceable to its inputs)."""
    return [
        Column("candle_fingerprint", String(64), nullable=False),
        Column("code_version", String(64), nullable=False),
        Column("dagster_run_id", String(64), nullable=True),
    ]


param_sets = Table(
    "param_sets",
    metadata,
    Column("slug", String(SLUG_LENGTH), primary_key=True),
    Column("strategy", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False, default=utc_now),
)
"""One row per named parameter set. Slugs are URL-safe and double as Dagster partition keys
(``rsi-p14-os30-ob70``), so they never contain ``| , [ ]`` or whitespace."""

Index("param_sets_strategy", param_sets.c.strategy)

backtest_results = Table(
    "backtest_results",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("run_key", String(RUN_KEY_LENGTH), nullable=False),
    *_series_columns(),
    Column("slug", String(SLUG_LENGTH), nullable=False),
    Column("params", JSON, nullable=False),
    Column("engine", String(32), nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    Column("bars", Integer, nullable=False),
    *_provenance_columns(),
    Column("cash", Float(53), nullable=False),
    Column("commission", Float(53), nullable=False),
    Column("slippage", Float(53), nullable=False),
    Column("stake", Float(53), nullable=False),
    Column("rejected_orders", Integer, nullable=False),
    Column("equity_final", Float(53), nullable=True),
    Column("metrics", JSON, nullable=False),
    # Promoted from ``metrics`` so leaderboards sort on plain indexed columns.
    Column("total_return", Float(53), nullable=True),
    Column("sharpe_ratio", Float(53), nullable=True),
    Column("max_drawdown", Float(53), nullable=True),
    Column("trade_count", Integer, nullable=True),
    Column("win_rate", Float(53), nullable=True),
    Column("created_at", UtcDateTime, nullable=False, default=utc_now),
    UniqueConstraint("run_key", name="backtest_results_run_key"),
)
"""One row per backtest partition. ``run_key`` is a hash of (exchange, symbol, interval,
strategy, slug, window, engine): saving the same partition again replaces its row."""

Index(
    "backtest_results_board",
    backtest_results.c.exchange,
    backtest_results.c.symbol,
    backtest_results.c.strategy,
)
Index("backtest_results_created", backtest_results.c.created_at)
Index("backtest_results_run_id", backtest_results.c.dagster_run_id)
"""``cryptota results RUN_ID`` reads a run's results by its Dagster run id."""

_RESULT_FK = "backtest_results.run_key"

backtest_trades = Table(
    "backtest_trades",
    metadata,
    Column("run_key", String(RUN_KEY_LENGTH), ForeignKey(_RESULT_FK, ondelete="CASCADE")),
    Column("trade_no", Integer, nullable=False),
    Column("entry_time", UtcDateTime, nullable=False),
    Column("exit_time", UtcDateTime, nullable=True),
    Column("side", String(8), nullable=False),
    Column("size", Float(53), nullable=True),
    Column("entry_price", Float(53), nullable=True),
    Column("exit_price", Float(53), nullable=True),
    Column("pnl", Float(53), nullable=True),
    Column("pnl_pct", Float(53), nullable=True),
    Column("commission", Float(53), nullable=True),
    Column("bars", Integer, nullable=False),
    Column("is_open", Boolean, nullable=False),
    PrimaryKeyConstraint("run_key", "trade_no", name="backtest_trades_pkey"),
)
"""The trades of one run, numbered from 0 in the engine's order (columns of TRADE_COLUMNS)."""

equity_curves = Table(
    "equity_curves",
    metadata,
    Column("run_key", String(RUN_KEY_LENGTH), ForeignKey(_RESULT_FK, ondelete="CASCADE")),
    Column("open_time", UtcDateTime, nullable=False),
    Column("equity", Float(53), nullable=True),
    Column("benchmark", Float(53), nullable=True),
    PrimaryKeyConstraint("run_key", "open_time", name="equity_curves_pkey"),
)
"""Portfolio value and buy-and-hold benchmark at every candle close of one run: one narrow row
per candle, written with binary COPY on PostgreSQL."""

optimization_runs = Table(
    "optimization_runs",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("run_key", String(RUN_KEY_LENGTH), nullable=False),
    *_series_columns(),
    Column("engine", String(32), nullable=False),
    Column("grid", JSON, nullable=False),
    Column("objective", String(64), nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    Column("bars", Integer, nullable=False),
    *_provenance_columns(),
    Column("combinations", Integer, nullable=False),
    Column("best_slug", String(SLUG_LENGTH), nullable=True),
    Column("best_params", JSON, nullable=True),
    Column("best_score", Float(53), nullable=True),
    Column("top_results", JSON, nullable=True),
    Column("statistics", JSON, nullable=True),
    Column("created_at", UtcDateTime, nullable=False, default=utc_now),
    UniqueConstraint("run_key", name="optimization_runs_run_key"),
)
"""One grid search over one series and window. ``top_results`` holds the ranked top-K (slug,
params, score, re-check on backtrader); ``statistics`` the overfitting figures (probabilistic and
deflated Sharpe ratio, number of trials)."""

Index("optimization_runs_symbol", optimization_runs.c.symbol, optimization_runs.c.strategy)

walk_forward_windows = Table(
    "walk_forward_windows",
    metadata,
    Column("run_key", String(RUN_KEY_LENGTH), nullable=False),
    Column("window_no", Integer, nullable=False),
    *_series_columns(),
    Column("engine", String(32), nullable=False),
    Column("grid", JSON, nullable=False),
    Column("objective", String(64), nullable=False),
    Column("in_sample_start", UtcDateTime, nullable=False),
    Column("in_sample_end", UtcDateTime, nullable=False),
    Column("out_sample_start", UtcDateTime, nullable=False),
    Column("out_sample_end", UtcDateTime, nullable=False),
    *_provenance_columns(),
    Column("best_slug", String(SLUG_LENGTH), nullable=True),
    Column("best_params", JSON, nullable=True),
    Column("in_sample_score", Float(53), nullable=True),
    Column("out_sample_score", Float(53), nullable=True),
    Column("out_sample_return", Float(53), nullable=True),
    Column("out_sample_metrics", JSON, nullable=True),
    Column("created_at", UtcDateTime, nullable=False, default=utc_now),
    PrimaryKeyConstraint("run_key", "window_no", name="walk_forward_windows_pkey"),
)
"""One row per walk-forward window: the parameters chosen in-sample and how they did out of
sample. ``run_key`` names the whole walk-forward report, ``window_no`` counts from 0; the data
window of the row is ``[in_sample_start, out_sample_end)``. ``out_sample_metrics`` holds the
window's ``total_return``, ``sharpe_ratio``, ``max_drawdown``, ``trade_count`` and
``total_commission`` (the exit at the window's end included), ``in_sample_annual_log_return``,
``out_sample_annual_log_return`` and ``anchored``; rows written before the walk-forward closed
positions at the window's end hold CAGRs as ``in_sample_annual_return`` and
``out_sample_annual_return`` instead (read as stored, nothing parses them)."""

Index("walk_forward_windows_symbol", walk_forward_windows.c.symbol, walk_forward_windows.c.strategy)

paper_orders = Table(
    "paper_orders",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("order_key", String(RUN_KEY_LENGTH), nullable=False),
    *_series_columns(),
    Column("slug", String(SLUG_LENGTH), nullable=False),
    Column("params", JSON, nullable=False),
    Column("engine", String(32), nullable=False),
    Column("signal_time", UtcDateTime, nullable=False),
    Column("side", String(8), nullable=False),
    Column("order_type", String(16), nullable=False),
    Column("price", Float(53), nullable=True),
    Column("size", Float(53), nullable=True),
    Column("status", String(16), nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    *_provenance_columns(),
    Column("created_at", UtcDateTime, nullable=False, default=utc_now),
    UniqueConstraint("order_key", name="paper_orders_order_key"),
)
"""Signals of the current best parameters turned into simulated orders (the old service's "live
trades"). ``order_key`` hashes (exchange, symbol, interval, slug, signal_time, side) so
re-evaluating the same candle never places the same paper order twice; ``signal_time`` is the
open time of the candle whose close produced the signal."""

Index("paper_orders_symbol_time", paper_orders.c.symbol, paper_orders.c.signal_time)
