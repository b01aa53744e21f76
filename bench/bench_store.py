"""Candle store: upsert and read of one year of 1m candles, ours against plain pandas.

The peer is what a hand-rolled service does: ``DataFrame.to_sql`` into a table with the same
primary key, and ``pandas.read_sql`` back into a frame. Where the timescaledb extension is
installed for this machine's PostgreSQL, a preloaded cluster adds the TimescaleDB rows: the same
cases, then the year moved into the columnstore and re-upserted and read again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from sqlalchemy import text

from bench.common import Row, timed, year_of_1m_candles
from cryptota_core.market.frame import SeriesKey
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.database import create_store_engine
from tests.services import start_postgres, timescale_library

KEY = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1m")


def _pandas_baseline(url: str, frame: pd.DataFrame, group: str) -> list[Row]:
    engine = create_store_engine(url)
    flat = frame.reset_index()
    flat.insert(0, "exchange", KEY.exchange)
    flat.insert(1, "symbol", KEY.symbol)
    flat.insert(2, "interval", KEY.interval)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS candles_pandas"))
        flat.head(0).to_sql("candles_pandas", conn, index=False)
        conn.execute(
            text(
                "ALTER TABLE candles_pandas ADD PRIMARY KEY "
                '(exchange, symbol, "interval", open_time)'
                if engine.dialect.name == "postgresql"
                else "CREATE UNIQUE INDEX candles_pandas_pk ON candles_pandas "
                '(exchange, symbol, "interval", open_time)'
            )
        )
    write_s, _ = timed(
        lambda: flat.to_sql(
            "candles_pandas", engine, if_exists="append", index=False, chunksize=50_000
        )
    )
    query = (
        "SELECT * FROM candles_pandas WHERE exchange = 'synthetic' AND symbol = 'BTCUSDT' "
        "AND \"interval\" = '1m' ORDER BY open_time"
    )
    read_s, back = timed(lambda: pd.read_sql(query, engine, index_col="open_time"))
    assert len(back) == len(frame)
    engine.dispose()
    return [
        Row(group, "insert 1 year of 1m", "pandas to_sql", len(frame), write_s),
        Row(group, "read 1 year into a frame", "pandas read_sql", len(frame), read_s),
    ]


def _ours(url: str, frame: pd.DataFrame, group: str) -> list[Row]:
    store = CandleStore.from_url(url)
    start, end = frame.index[0], frame.index[-1] + pd.Timedelta(minutes=1)
    insert_s, _ = timed(lambda: store.upsert(KEY, frame))
    reupsert_s, _ = timed(lambda: store.upsert(KEY, frame))
    assert store.count(KEY, start, end) == len(frame), "re-upsert duplicated candles"
    read_s, back = timed(lambda: store.read(KEY, start, end), repeat=3)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    hourly = SeriesKey(exchange=KEY.exchange, symbol=KEY.symbol, interval="1h")
    rollup_s, rolled = timed(lambda: store.read(hourly, start, end))
    how = "continuous aggregate" if store.has_timescale else "resampled"
    rows = [
        Row(group, "insert 1 year of 1m", "cryptota upsert", len(frame), insert_s),
        Row(group, "re-upsert same year (no-op)", "cryptota upsert", len(frame), reupsert_s),
        Row(group, "read 1 year into a frame", "cryptota read", len(frame), read_s),
        Row(
            group,
            f"read 1 year as 1h ({how})",
            "cryptota read",
            len(rolled),
            rollup_s,
            unit="1h candles",
        ),
    ]
    if store.has_timescale:
        rows += _columnstore(store, frame, group)
    store.engine.dispose()
    return rows


def _columnstore(store: CandleStore, frame: pd.DataFrame, group: str) -> list[Row]:
    """The year moved into the columnstore, then re-upserted unchanged (must decompress nothing)
    and read back."""
    start, end = frame.index[0], frame.index[-1] + pd.Timedelta(minutes=1)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        chunks = conn.execute(text("SELECT show_chunks('candles')::text")).scalars().all()
        for chunk in chunks:
            conn.execute(text("CALL convert_to_columnstore(CAST(:c AS regclass))"), {"c": chunk})
    reupsert_s, result = timed(lambda: store.upsert(KEY, frame))
    assert result.written == 0
    read_s, back = timed(lambda: store.read(KEY, start, end), repeat=3)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    return [
        Row(
            group,
            "re-upsert same year over columnstore (no-op)",
            "cryptota upsert",
            len(frame),
            reupsert_s,
        ),
        Row(group, "read 1 year from the columnstore", "cryptota read", len(frame), read_s),
    ]


def run() -> list[Row]:
    frame = year_of_1m_candles()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_ours = f"sqlite:///{Path(tmp) / 'ours.db'}"
        sqlite_peer = f"sqlite:///{Path(tmp) / 'pandas.db'}"
        rows += _ours(sqlite_ours, frame, "store: SQLite")
        rows += _pandas_baseline(sqlite_peer, frame, "store: SQLite")
    server = start_postgres()
    try:
        rows += _ours(server.url, frame, "store: PostgreSQL")
        rows += _pandas_baseline(server.url, frame, "store: PostgreSQL")
    finally:
        server.stop()
    if timescale_library() is not None:
        server = start_postgres(timescale=True)
        try:
            rows += _ours(server.url, frame, "store: TimescaleDB 2.28")
            rows += _pandas_baseline(server.url, frame, "store: TimescaleDB 2.28")
        finally:
            server.stop()
    return rows
