"""The candle store: idempotent bulk upserts and fast range reads of candle frames.

One call writes one series in one transaction, so a load killed half-way leaves nothing of that
call behind, and a re-run or a concurrent run of the same range leaves exactly one copy of each
candle. PostgreSQL takes the rows through ``COPY`` into a temporary staging table and one
``INSERT ... ON CONFLICT``; SQLite through an ``executemany`` upsert. Candles identical to the
stored ones are not rewritten (no dead tuples on a re-ingest).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, and_, delete, func, select, text

from cryptota_core.errors import NoDataError
from cryptota_core.market.frame import (
    CANDLE_COLUMNS,
    CandleReport,
    SeriesKey,
    candle_frame_from_arrays,
    empty_candle_frame,
    normalise_candles,
    validate_candles,
)
from cryptota_core.market.intervals import ROLLUP_INTERVALS, interval_ms
from cryptota_core.market.resample import resample_candles
from cryptota_core.storage import pg_copy, timescale
from cryptota_core.storage.database import create_store_engine, translate_db_errors
from cryptota_core.storage.pg_copy import ms_to_pg_timestamp, pg_timestamp_to_ms
from cryptota_core.storage.schema import candle_gaps, candles, metadata

log = logging.getLogger(__name__)

BASE_INTERVAL = "1m"

_VALUE_COLUMNS = list(CANDLE_COLUMNS)
_QUOTED = ", ".join(f'"{c}"' for c in _VALUE_COLUMNS)
_COLUMNS = f'exchange, symbol, "interval", open_time, {_QUOTED}, ingested_at'


def _on_conflict(distinct: str) -> str:
    """The upsert clause of both dialects: replace a stored candle only when a value differs, so
    re-ingesting unchanged candles rewrites nothing (``distinct``: PostgreSQL's
    ``IS DISTINCT FROM``, SQLite's ``IS NOT``)."""
    assignments = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in [*_VALUE_COLUMNS, "ingested_at"])
    changed = " OR ".join(f'candles."{c}" {distinct} EXCLUDED."{c}"' for c in _VALUE_COLUMNS)
    return (
        f'ON CONFLICT (exchange, symbol, "interval", open_time) DO UPDATE SET {assignments} '
        f"WHERE {changed}"
    )


@dataclass(frozen=True)
class UpsertResult:
    """What one upsert did: ``received`` candles, of which ``written`` were new or changed."""

    received: int
    written: int


@dataclass(frozen=True)
class SeriesSummary:
    """Rows and time span of one stored series."""

    key: SeriesKey
    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A short, stable hash of a candle frame's times and values: two reads give the same
    fingerprint exactly when they hold the same candles, on SQLite and PostgreSQL alike."""
    if frame.empty:
        return "empty"
    hashed = pd.util.hash_pandas_object(frame[_VALUE_COLUMNS], index=True).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


class CandleStore:
    """Candles of every series in one database (TimescaleDB, PostgreSQL or SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._timescale: bool | None = None

    @classmethod
    def from_url(
        cls, url: str, *, create: bool = True, retention_days: int | None = None
    ) -> CandleStore:
        """Connect to ``url``; with ``create``, also create the schema (and on TimescaleDB the
        retention policy for ``retention_days``, CRYPTOTA_TIMESCALE_RETENTION_DAYS)."""
        store = cls(create_store_engine(url))
        if create:
            store.create_schema(retention_days=retention_days)
        return store

    @property
    def has_timescale(self) -> bool:
        """True when the database has the timescaledb extension installed in it."""
        if self._timescale is None:
            with self.engine.connect() as conn:
                self._timescale = self.is_postgres and timescale.is_installed(conn)
        return self._timescale

    def create_schema(self, *, retention_days: int | None = None) -> None:
        """Create missing tables; on PostgreSQL with TimescaleDB available also the hypertable,
        compression and retention policies and the continuous aggregates. Safe to call often."""
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            if self.is_postgres:
                # Serialise concurrent first starts (several Dagster runs at once).
                conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))
            metadata.create_all(conn)
            if self.is_postgres and timescale.is_available(conn):
                timescale.enable(conn, retention_days=retention_days)
        self._timescale = None

    # -- writes -------------------------------------------------------------------------------

    def upsert(self, key: SeriesKey, frame: pd.DataFrame) -> UpsertResult:
        """Insert or update the candles of one series in one transaction."""
        frame = normalise_candles(frame)
        if frame.empty:
            return UpsertResult(0, 0)
        open_ms = pd.DatetimeIndex(frame.index).as_unit("ns").asi8 // 1_000_000
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            if self.is_postgres:
                written = self._upsert_postgres(conn, key, open_ms, frame)
            else:
                written = self._upsert_sqlite(conn, key, open_ms, frame)
        return UpsertResult(len(frame), written)

    def _upsert_postgres(
        self, conn: Connection, key: SeriesKey, open_ms: np.ndarray, frame: pd.DataFrame
    ) -> int:
        n = len(open_ms)
        now = ms_to_pg_timestamp(np.array([pd.Timestamp.now(tz="UTC").value // 1_000_000]))[0]
        payload = pg_copy.encode(
            [
                ("exchange", key.exchange.encode()),
                ("symbol", key.symbol.encode()),
                ("interval", key.interval.encode()),
                ("open_time", ms_to_pg_timestamp(open_ms)),
                *[(c, frame[c].to_numpy()) for c in _VALUE_COLUMNS],
                ("ingested_at", np.full(n, now, dtype="int64")),
            ],
            n,
        )
        columns = _COLUMNS
        # Serialise writers of the same series so that the empty-range fast path below cannot
        # race another writer; different series still load in parallel.
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:series, 0))"), {"series": str(key)}
        )
        occupied = conn.execute(
            select(candles.c.open_time)
            .where(
                self._where(
                    key,
                    pd.Timestamp(int(open_ms[0]), unit="ms", tz="UTC"),
                    pd.Timestamp(int(open_ms[-1]) + 1, unit="ms", tz="UTC"),
                )
            )
            .limit(1)
        ).first()
        raw = conn.connection.driver_connection
        assert raw is not None
        if occupied is None:
            # Nothing stored in this range yet: COPY straight into the table.
            copy_sql = f"COPY candles ({columns}) FROM STDIN (FORMAT binary)"
            with raw.cursor() as cur, cur.copy(copy_sql) as copy:
                copy.write(payload)
            return n
        conn.exec_driver_sql(
            "CREATE TEMP TABLE candles_stage (LIKE candles INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        copy_sql = f"COPY candles_stage ({columns}) FROM STDIN (FORMAT binary)"
        with raw.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.write(payload)
        result = conn.exec_driver_sql(
            f"INSERT INTO candles ({columns}) SELECT {columns} FROM candles_stage "
            + _on_conflict("IS DISTINCT FROM")
        )
        return int(result.rowcount)

    def _upsert_sqlite(
        self, conn: Connection, key: SeriesKey, open_ms: np.ndarray, frame: pd.DataFrame
    ) -> int:
        now_ms = int(pd.Timestamp.now(tz="UTC").value // 1_000_000)
        columns = [frame[c].to_numpy().tolist() for c in _VALUE_COLUMNS]
        n = len(open_ms)
        rows = list(
            zip(
                [key.exchange] * n,
                [key.symbol] * n,
                [key.interval] * n,
                open_ms.tolist(),
                *columns,
                [now_ms] * n,
                strict=True,
            )
        )
        placeholders = ", ".join("?" * (len(_VALUE_COLUMNS) + 5))
        sql = f"INSERT INTO candles ({_COLUMNS}) VALUES ({placeholders}) " + _on_conflict("IS NOT")
        before = conn.exec_driver_sql("SELECT total_changes()").scalar_one()
        conn.exec_driver_sql(sql, rows)
        after = conn.exec_driver_sql("SELECT total_changes()").scalar_one()
        return int(after - before)

    def record_gaps(
        self, key: SeriesKey, report: CandleReport, start: pd.Timestamp, end: pd.Timestamp
    ) -> None:
        """Replace the recorded gaps of ``key`` inside ``[start, end)`` with those of ``report``."""
        step = pd.Timedelta(milliseconds=interval_ms(key.interval))
        rows = [
            {
                "exchange": key.exchange,
                "symbol": key.symbol,
                "interval": key.interval,
                "gap_start": g_start.to_pydatetime(),
                "gap_end": g_end.to_pydatetime(),
                "missing": int((g_end - g_start) // step) + 1,
            }
            for g_start, g_end in report.gaps
        ]
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            conn.execute(
                delete(candle_gaps).where(
                    candle_gaps.c.exchange == key.exchange,
                    candle_gaps.c.symbol == key.symbol,
                    candle_gaps.c.interval == key.interval,
                    candle_gaps.c.gap_start >= start.to_pydatetime(),
                    candle_gaps.c.gap_start < end.to_pydatetime(),
                )
            )
            if rows:
                conn.execute(candle_gaps.insert(), rows)

    def purge_before(self, cutoff: pd.Timestamp) -> int:
        """Retention clean-up: delete every candle opening before ``cutoff`` and the gap records
        that end before it, in one transaction; returns candles deleted. (On TimescaleDB the
        retention policy drops whole chunks on its own schedule; this works everywhere.)"""
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            deleted = conn.execute(
                delete(candles).where(candles.c.open_time < cutoff.to_pydatetime())
            )
            conn.execute(delete(candle_gaps).where(candle_gaps.c.gap_end < cutoff.to_pydatetime()))
        return int(deleted.rowcount)

    def refresh_rollups(self, start: pd.Timestamp, end: pd.Timestamp) -> bool:
        """Bring the TimescaleDB continuous aggregates up to date over ``[start, end)`` now rather
        than at the next policy run; False (nothing to do) where rollups are resampled on read.
        TimescaleDB refuses to refresh inside a transaction, hence the autocommit connection."""
        if not (self.is_postgres and self.has_timescale):
            return False
        with translate_db_errors(self.engine):
            autocommit = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            with autocommit as conn:
                timescale.refresh_aggregates(conn, start.isoformat(), end.isoformat())
        return True

    def rollup_counts(
        self, exchange: str, symbol: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> dict[str, int]:
        """How many 15m/1h/4h/1d candles the store serves for ``[start, end)``: what a backtest
        at each interval would see."""
        return {
            interval: len(
                self.read(
                    SeriesKey(exchange=exchange, symbol=symbol, interval=interval), start, end
                )
            )
            for interval in ROLLUP_INTERVALS
        }

    def delete_range(self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp) -> int:
        """Delete the candles of ``key`` opening in ``[start, end)``; returns rows deleted."""
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            result = conn.execute(delete(candles).where(self._where(key, start, end)))
        return int(result.rowcount)

    # -- reads --------------------------------------------------------------------------------

    def read(
        self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp, *, require: bool = False
    ) -> pd.DataFrame:
        """The candles of ``key`` opening in ``[start, end)`` as a candle frame.

        An interval that is not stored itself is built from the stored 1m candles: from the
        TimescaleDB continuous aggregate where there is one, otherwise by resampling on read.
        With ``require`` an empty result raises :class:`NoDataError` with the command to run."""
        with translate_db_errors(self.engine):
            frame = self._read_exact(key, start, end)
            if frame.empty and key.interval != BASE_INTERVAL:
                base = SeriesKey(exchange=key.exchange, symbol=key.symbol, interval=BASE_INTERVAL)
                step = pd.Timedelta(milliseconds=interval_ms(key.interval))
                if self.is_postgres and key.interval in ROLLUP_INTERVALS and self.has_timescale:
                    frame = self._read_postgres(
                        timescale.aggregate_view(key.interval),
                        base,
                        start,
                        end,
                        with_interval=False,
                    )
                else:
                    lo = start.floor(step)
                    frame = resample_candles(
                        self._read_exact(base, lo, end), BASE_INTERVAL, key.interval
                    )
                    frame = frame[(frame.index >= start) & (frame.index < end)]
        if require and frame.empty:
            raise NoDataError(
                f"no candles for {key.symbol} {key.interval} ({key.exchange}) in "
                f"[{start.isoformat()}, {end.isoformat()}); run `cryptota ingest --symbols "
                f"{key.symbol} --start {start.date()} --end {end.date()}` first"
            )
        return frame

    def _read_exact(self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        if self.is_postgres:
            return self._read_postgres("candles", key, start, end, with_interval=True)
        return self._read_sqlite(key, start, end)

    def _read_postgres(
        self,
        relation: str,
        key: SeriesKey,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        with_interval: bool,
    ) -> pd.DataFrame:
        interval_clause = 'AND "interval" = %s ' if with_interval else ""
        params: list[Any] = [key.exchange, key.symbol]
        if with_interval:
            params.append(key.interval)
        params += [start.to_pydatetime(), end.to_pydatetime()]
        sql = (
            f"COPY (SELECT open_time, {_QUOTED} FROM {relation} "
            f"WHERE exchange = %s AND symbol = %s {interval_clause}"
            "AND open_time >= %s AND open_time < %s ORDER BY open_time) TO STDOUT (FORMAT binary)"
        )
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur, cur.copy(sql, params) as copy:
                data = b"".join(bytes(chunk) for chunk in copy)
        kinds = ["i"] + ["i" if c == "trades" else "f" for c in _VALUE_COLUMNS]
        values = pg_copy.decode(data, kinds)
        return candle_frame_from_arrays(
            pg_timestamp_to_ms(values[0]),
            {c: values[i + 1] for i, c in enumerate(_VALUE_COLUMNS)},
        )

    def _read_sqlite(self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        sql = (
            f"SELECT open_time, {_QUOTED} FROM candles WHERE exchange = ? AND symbol = ? "
            'AND "interval" = ? AND open_time >= ? AND open_time < ? ORDER BY open_time'
        )
        params = (
            key.exchange,
            key.symbol,
            key.interval,
            int(start.value // 1_000_000),
            int(end.value // 1_000_000),
        )
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            rows = raw.execute(sql, params).fetchall()
        if not rows:
            return empty_candle_frame()
        array = np.array(rows, dtype="float64")
        return candle_frame_from_arrays(
            array[:, 0].astype("int64"),
            {c: array[:, i + 1] for i, c in enumerate(_VALUE_COLUMNS)},
        )

    def _where(self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp) -> Any:
        return and_(
            candles.c.exchange == key.exchange,
            candles.c.symbol == key.symbol,
            candles.c.interval == key.interval,
            candles.c.open_time >= start.to_pydatetime(),
            candles.c.open_time < end.to_pydatetime(),
        )

    def count(self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp) -> int:
        """Stored candles of ``key`` in ``[start, end)``."""
        with translate_db_errors(self.engine), self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(candles).where(self._where(key, start, end))
                ).scalar_one()
            )

    def gap_report(self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp) -> CandleReport:
        """Validate the stored candles of ``[start, end)``: expected count, gaps and defects."""
        return validate_candles(self.read(key, start, end), key.interval, start=start, end=end)

    def fingerprint(self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp) -> str:
        """:func:`frame_fingerprint` of the stored candles of ``[start, end)``."""
        return frame_fingerprint(self.read(key, start, end))

    def summary(self, key: SeriesKey) -> SeriesSummary:
        """Row count and first/last open time of a stored series."""
        query = select(
            func.count(), func.min(candles.c.open_time), func.max(candles.c.open_time)
        ).where(
            candles.c.exchange == key.exchange,
            candles.c.symbol == key.symbol,
            candles.c.interval == key.interval,
        )
        with translate_db_errors(self.engine), self.engine.connect() as conn:
            rows, first, last = conn.execute(query).one()
        return SeriesSummary(
            key=key,
            rows=int(rows),
            first=pd.Timestamp(first).tz_convert("UTC") if first is not None else None,
            last=pd.Timestamp(last).tz_convert("UTC") if last is not None else None,
        )

    def series(self) -> list[SeriesKey]:
        """Every stored (exchange, symbol, interval)."""
        query = select(candles.c.exchange, candles.c.symbol, candles.c.interval).distinct()
        with translate_db_errors(self.engine), self.engine.connect() as conn:
            return [
                SeriesKey(exchange=e, symbol=s, interval=i) for e, s, i in conn.execute(query).all()
            ]
