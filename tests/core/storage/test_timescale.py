"""TimescaleDB features: exact DDL, the plain-PostgreSQL fallback, and (where the extension
exists) the real hypertable, policies and continuous aggregates."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import text

from cryptota_core.market.frame import SeriesKey
from cryptota_core.market.resample import resample_candles
from cryptota_core.market.sources.synthetic import generate_candles
from cryptota_core.storage import timescale
from cryptota_core.storage.candle_store import CandleStore

START = pd.Timestamp("2024-01-01", tz="UTC")
KEY = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1m")


def test_hypertable_ddl_is_the_documented_form() -> None:
    statements = timescale.hypertable_statements(retention_days=90)
    assert statements == [
        "CREATE EXTENSION IF NOT EXISTS timescaledb",
        "SELECT create_hypertable('candles', by_range('open_time', INTERVAL '1 day'), "
        "if_not_exists => TRUE, migrate_data => TRUE)",
        "ALTER TABLE candles SET (timescaledb.compress, "
        "timescaledb.compress_orderby = 'open_time DESC', "
        "timescaledb.compress_segmentby = 'symbol')",
        "SELECT add_compression_policy('candles', compress_after => INTERVAL '7 days', "
        "if_not_exists => TRUE)",
        "SELECT add_retention_policy('candles', drop_after => INTERVAL '90 days', "
        "if_not_exists => TRUE)",
    ]
    assert not any("retention" in s for s in timescale.hypertable_statements(None))


def test_continuous_aggregate_ddl_is_the_documented_form() -> None:
    create, policy = timescale.aggregate_statements("1h")
    assert create.startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS candles_1h WITH (timescaledb.continuous) AS "
    )
    assert "time_bucket(INTERVAL '1 hour', open_time) AS open_time" in create
    assert (
        "first(open, open_time) AS open" in create and "last(close, open_time) AS close" in create
    )
    assert "GROUP BY exchange, symbol, time_bucket(INTERVAL '1 hour', open_time)" in create
    assert create.endswith("WITH NO DATA")
    assert policy == (
        "SELECT add_continuous_aggregate_policy('candles_1h', start_offset => INTERVAL '3 days', "
        "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour', "
        "if_not_exists => TRUE)"
    )
    assert set(timescale.AGGREGATES) == {"15m", "1h", "4h", "1d"}


def _timescale_available(url: str) -> bool:
    store = CandleStore.from_url(url, create=False)
    with store.engine.connect() as conn:
        return timescale.is_available(conn)


def test_plain_postgresql_works_without_the_extension(postgres_url: str) -> None:
    if _timescale_available(postgres_url):
        pytest.skip("this server has TimescaleDB; the plain-PostgreSQL path is not exercised")
    store = CandleStore.from_url(postgres_url)
    assert store.has_timescale is False
    frame = generate_candles("BTCUSDT", "1m", START, START + pd.Timedelta(days=2), seed=1)
    store.upsert(KEY, frame)
    hourly = store.read(
        SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="4h"),
        START,
        START + pd.Timedelta(days=2),
    )
    pd.testing.assert_frame_equal(hourly, resample_candles(frame, "1m", "4h"))
    with store.engine.connect() as conn:
        tables = conn.execute(text("SELECT count(*) FROM pg_matviews")).scalar_one()
    assert tables == 0


def test_timescale_hypertable_and_aggregates(postgres_url: str) -> None:
    if not _timescale_available(postgres_url):
        pytest.skip("the timescaledb extension is not installed on this PostgreSQL server")
    store = CandleStore.from_url(postgres_url)
    assert store.has_timescale
    frame = generate_candles("BTCUSDT", "1m", START, START + pd.Timedelta(days=2), seed=1)
    store.upsert(KEY, frame)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        timescale.refresh_aggregates(
            conn, START.isoformat(), (START + pd.Timedelta(days=2)).isoformat()
        )
        hypertables = conn.execute(
            text(
                "SELECT count(*) FROM timescaledb_information.hypertables "
                "WHERE hypertable_name = 'candles'"
            )
        ).scalar_one()
    assert hypertables == 1
    hourly = store.read(
        SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1h"),
        START,
        START + pd.Timedelta(days=2),
    )
    pd.testing.assert_frame_equal(hourly, resample_candles(frame, "1m", "1h"), rtol=1e-12)
