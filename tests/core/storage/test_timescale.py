"""TimescaleDB features: the documented DDL, the plain-PostgreSQL fallback where the extension is
not preloaded, and (where the extension is installed) the real hypertable, columnstore, policies
and continuous aggregates on TimescaleDB 2.28.

The generic read semantics (complete buckets, no look-ahead, fresh after a write, fingerprints
equal on every backend) are tested for every backend, TimescaleDB included, in
``test_candle_store.py``; this file pins what only TimescaleDB has.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from cryptota_core.market.frame import SeriesKey
from cryptota_core.market.resample import resample_candles
from cryptota_core.market.sources.synthetic import generate_candles
from cryptota_core.storage import timescale
from cryptota_core.storage.candle_store import CandleStore
from tests.conftest import HAS_TIMESCALE, TIMESCALE_SUITE
from tests.core.storage.test_candle_store import make_candles

START = pd.Timestamp("2024-01-01", tz="UTC")
KEY = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1m")
HOUR = KEY.model_copy(update={"interval": "1h"})


def test_columnstore_ddl_is_the_documented_2_28_form() -> None:
    """Hypercore names (2.18+), not the deprecated ``compress*`` ones; the series identity is the
    segment, as 2.28 recommends."""
    assert timescale.hypertable_statement() == (
        "SELECT create_hypertable('candles', by_range('open_time', INTERVAL '1 day'), "
        "migrate_data => TRUE)"
    )
    assert timescale.columnstore_statements() == [
        "ALTER TABLE candles SET (timescaledb.enable_columnstore = true, "
        "timescaledb.segmentby = 'exchange, symbol, interval', "
        "timescaledb.orderby = 'open_time DESC')",
        "CALL remove_columnstore_policy('candles', if_exists => true)",
        "CALL add_columnstore_policy('candles', after => INTERVAL '7 days')",
    ]
    assert timescale.retention_statements(90) == [
        "SELECT remove_retention_policy('candles', if_exists => true)",
        "SELECT add_retention_policy('candles', drop_after => INTERVAL '90 days')",
    ]
    assert timescale.retention_statements(None) == [
        "SELECT remove_retention_policy('candles', if_exists => true)"
    ]


def test_continuous_aggregate_ddl_is_the_documented_form() -> None:
    create, policy = timescale.aggregate_statements("1h")
    assert create.startswith(
        "CREATE MATERIALIZED VIEW candles_1h WITH (timescaledb.continuous, "
        "timescaledb.materialized_only = false) AS "
    )
    assert "time_bucket(INTERVAL '1 hour', open_time) AS open_time" in create
    assert "first(open, open_time) AS open" in create
    assert "last(close, open_time) AS close" in create
    assert "max(open_time) AS last_open_time" in create
    assert "GROUP BY exchange, symbol, time_bucket(INTERVAL '1 hour', open_time)" in create
    assert create.endswith("WITH NO DATA")
    assert policy == (
        "SELECT add_continuous_aggregate_policy('candles_1h', start_offset => INTERVAL '3 days', "
        "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour', "
        "if_not_exists => TRUE)"
    )
    assert set(timescale.AGGREGATES) == {"15m", "1h", "4h", "1d"}


@pytest.mark.skipif(TIMESCALE_SUITE, reason="the suite's PostgreSQL preloads TimescaleDB")
def test_plain_postgresql_works_where_the_extension_is_not_preloaded(postgres_url: str) -> None:
    """The default test cluster does not preload timescaledb. Where the package is installed
    anyway (this is then the case the issue found broken), the store must not try to create the
    extension but take the plain path."""
    store = CandleStore.from_url(postgres_url)
    with store.engine.connect() as conn:
        packaged = conn.execute(
            text("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
        ).scalar_one()
        assert timescale.is_available(conn) is False
    assert bool(packaged) is HAS_TIMESCALE
    assert store.has_timescale is False
    frame = generate_candles("BTCUSDT", "1m", START, START + pd.Timedelta(days=2), seed=1)
    store.upsert(KEY, frame)
    four_hours = store.read(
        KEY.model_copy(update={"interval": "4h"}), START, START + pd.Timedelta(days=2)
    )
    pd.testing.assert_frame_equal(four_hours, resample_candles(frame, "1m", "4h"))
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM pg_matviews")).scalar_one() == 0


# ------------------------------------------------------------------- on a real TimescaleDB
def _chunks(store: CandleStore) -> tuple[int, int]:
    """(chunks, of which in the columnstore) of ``candles``."""
    with store.engine.connect() as conn:
        total, compressed = conn.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE is_compressed) "
                "FROM timescaledb_information.chunks WHERE hypertable_name = 'candles'"
            )
        ).one()
    return int(total), int(compressed)


def _compress_all(store: CandleStore) -> None:
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        chunks = conn.execute(text("SELECT show_chunks('candles')::text")).scalars().all()
        for chunk in chunks:
            conn.execute(text("CALL convert_to_columnstore(CAST(:c AS regclass))"), {"c": chunk})


def _retention(store: CandleStore) -> str | None:
    with store.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT config->>'drop_after' FROM timescaledb_information.jobs "
                "WHERE proc_name = 'policy_retention' AND hypertable_name = 'candles'"
            )
        ).first()
    return None if row is None else str(row[0])


def test_hypertable_columnstore_and_aggregates_are_set_up(timescale_url: str) -> None:
    store = CandleStore.from_url(timescale_url)
    assert store.has_timescale
    with store.engine.connect() as conn:
        assert conn.execute(
            text(
                "SELECT segmentby, orderby FROM "
                "timescaledb_information.hypertable_columnstore_settings "
                "WHERE hypertable = 'candles'::regclass"
            )
        ).one() == ("exchange,symbol,interval", "open_time DESC")
        views = conn.execute(
            text(
                "SELECT view_name, materialized_only FROM "
                "timescaledb_information.continuous_aggregates ORDER BY view_name"
            )
        ).all()
        policies = (
            conn.execute(
                text(
                    "SELECT proc_name FROM timescaledb_information.jobs "
                    "WHERE hypertable_name = 'candles'"
                )
            )
            .scalars()
            .all()
        )
        types = conn.execute(
            text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'candles' AND column_name IN ('exchange', 'symbol', 'interval')"
            )
        ).all()
    assert views == [(f"candles_{i}", False) for i in ("15m", "1d", "1h", "4h")]
    assert "policy_compression" in policies
    assert {data_type for _, data_type in types} == {"text"}  # 2.28's best practice


def test_store_created_with_varchar_series_columns_moves_to_text(timescale_url: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(timescale_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE candles (exchange varchar(16) NOT NULL, symbol varchar(20) NOT NULL, "
            '"interval" varchar(8) NOT NULL, open_time timestamptz NOT NULL, open float8 NOT NULL, '
            "high float8 NOT NULL, low float8 NOT NULL, close float8 NOT NULL, "
            "volume float8 NOT NULL, quote_volume float8 NOT NULL, trades bigint NOT NULL, "
            "taker_buy_base float8 NOT NULL, taker_buy_quote float8 NOT NULL, "
            "ingested_at timestamptz NOT NULL, "
            'PRIMARY KEY (exchange, symbol, "interval", open_time))'
        )
    engine.dispose()
    store = CandleStore.from_url(timescale_url)
    with store.engine.connect() as conn:
        types = (
            conn.execute(
                text(
                    "SELECT data_type FROM information_schema.columns WHERE table_name = 'candles' "
                    "AND column_name IN ('exchange', 'symbol', 'interval')"
                )
            )
            .scalars()
            .all()
        )
    assert set(types) == {"text"}
    store.upsert(KEY, make_candles(START, 120))
    assert len(store.read(HOUR, START, START + pd.Timedelta(hours=2))) == 2


def test_aggregates_serve_reads_right_after_ingest(timescale_url: str) -> None:
    """No Dagster run, no refresh call: an upsert alone makes the 1h read complete."""
    store = CandleStore.from_url(timescale_url)
    frame = generate_candles("BTCUSDT", "1m", START, START + pd.Timedelta(days=2), seed=3)
    store.upsert(KEY, frame)
    hourly = store.read(HOUR, START, START + pd.Timedelta(days=2))
    expected = resample_candles(frame, "1m", "1h")
    assert len(hourly) == 48
    pd.testing.assert_frame_equal(hourly, expected, check_exact=False, rtol=1e-12)
    for column in ("open", "high", "low", "close", "trades"):  # no float sums: exact
        np.testing.assert_array_equal(hourly[column].to_numpy(), expected[column].to_numpy())


def test_setup_is_idempotent_and_takes_no_lock_when_unchanged(timescale_url: str) -> None:
    """A second start changes nothing, so it needs no AccessExclusiveLock: it completes while
    another session holds a read lock on ``candles`` (an ALTER TABLE would wait for it)."""
    first = CandleStore.from_url(timescale_url)
    first.upsert(KEY, make_candles(START, 600))
    with first.engine.connect() as reader:
        reader.execute(text("SELECT count(*) FROM candles")).scalar_one()  # holds AccessShare
        with first.engine.begin() as conn:
            assert timescale.enable(conn) == timescale.SetupReport((), ())
        finished = threading.Event()
        errors: list[BaseException] = []

        def start_again() -> None:
            try:
                CandleStore.from_url(timescale_url).engine.dispose()
            except BaseException as e:  # reported by the assertion below
                errors.append(e)
            finished.set()

        threading.Thread(target=start_again, daemon=True).start()
        assert finished.wait(30), "a second CandleStore.from_url waited on the reader's lock"
        assert not errors, errors
        reader.rollback()


def test_retention_setting_changes_and_removal_are_applied(timescale_url: str) -> None:
    CandleStore.from_url(timescale_url, retention_days=90)
    store = CandleStore.from_url(timescale_url, retention_days=90)
    assert _retention(store) == "90 days"
    store = CandleStore.from_url(timescale_url, retention_days=30)
    assert _retention(store) == "30 days"
    store = CandleStore.from_url(timescale_url, retention_days=None)
    assert _retention(store) is None


def test_outdated_aggregate_is_rebuilt_with_the_stored_data(timescale_url: str) -> None:
    """A deployment whose aggregates predate the current definition gets them rebuilt (and
    filled from the stored 1m candles) on the next start."""
    store = CandleStore.from_url(timescale_url)
    frame = make_candles(START, 1440)
    store.upsert(KEY, frame)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP MATERIALIZED VIEW candles_1h")
        conn.exec_driver_sql(
            "CREATE MATERIALIZED VIEW candles_1h WITH (timescaledb.continuous) AS "
            "SELECT exchange, symbol, time_bucket(INTERVAL '1 hour', open_time) AS open_time, "
            "first(open, open_time) AS open FROM candles GROUP BY 1, 2, 3 WITH NO DATA"
        )
    store = CandleStore.from_url(timescale_url)
    hourly = store.read(HOUR, START, START + pd.Timedelta(days=1))
    pd.testing.assert_frame_equal(
        hourly, resample_candles(frame, "1m", "1h"), check_exact=False, rtol=1e-12
    )


def test_large_upsert_over_columnstore_chunks(timescale_url: str) -> None:
    """More than TimescaleDB's default 100k decompressed tuples per transaction: a correction of
    80 days of 1m candles already in the columnstore goes through, and reads see it."""
    store = CandleStore.from_url(timescale_url)
    frame = make_candles(START, 80 * 1440, seed=4)
    store.upsert(KEY, frame)
    _compress_all(store)
    total, compressed = _chunks(store)
    assert total == compressed >= 80
    corrected = frame.copy()
    corrected["volume"] = corrected["volume"] * 1.5
    result = store.upsert(KEY, corrected)
    assert result.written == len(frame) > 100_000
    end = START + pd.Timedelta(days=80)
    np.testing.assert_array_equal(
        store.read(KEY, START, end)["volume"].to_numpy(), corrected["volume"].to_numpy()
    )
    daily = store.read(KEY.model_copy(update={"interval": "1d"}), START, end)
    np.testing.assert_allclose(
        daily["volume"].to_numpy(),
        resample_candles(corrected, "1m", "1d")["volume"].to_numpy(),
        rtol=1e-12,
    )


def test_unchanged_reingest_decompresses_nothing(timescale_url: str) -> None:
    store = CandleStore.from_url(timescale_url)
    frame = make_candles(START, 20 * 1440, seed=5)
    store.upsert(KEY, frame)
    _compress_all(store)
    before = _chunks(store)
    assert store.upsert(KEY, frame).written == 0
    assert _chunks(store) == before  # every chunk still in the columnstore


def test_fingerprint_survives_compression(timescale_url: str, sqlite_url: str) -> None:
    """The 1m data is what a fingerprint hashes, so the columnstore's layout cannot change it."""
    frame = make_candles(START, 10 * 1440, seed=6)
    end = START + pd.Timedelta(days=10)
    reference = CandleStore.from_url(sqlite_url)
    reference.upsert(KEY, frame)
    store = CandleStore.from_url(timescale_url)
    store.upsert(KEY, frame)
    before = {
        i: store.fingerprint(KEY.model_copy(update={"interval": i}), START, end)
        for i in ("1m", "1h", "1d")
    }
    _compress_all(store)
    store.refresh_rollups(START, end)
    after = {
        i: store.fingerprint(KEY.model_copy(update={"interval": i}), START, end)
        for i in ("1m", "1h", "1d")
    }
    expected = {
        i: reference.fingerprint(KEY.model_copy(update={"interval": i}), START, end)
        for i in ("1m", "1h", "1d")
    }
    assert before == after == expected
