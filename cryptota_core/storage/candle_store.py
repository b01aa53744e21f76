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
    frame_fingerprint,
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
_ALL_COLUMNS = ["exchange", "symbol", "interval", "open_time", *_VALUE_COLUMNS, "ingested_at"]
_COLUMNS = ", ".join(f'"{c}"' for c in _ALL_COLUMNS)
_STAGED_COLUMNS = ", ".join(f's."{c}"' for c in _ALL_COLUMNS)
_COPY_KINDS = ["i"] + ["i" if c == "trades" else "f" for c in _VALUE_COLUMNS]
"""Binary COPY column kinds of a candle read: open_time, then the values."""
_STAGED_DIFFERS = " OR ".join(f's."{c}" IS DISTINCT FROM c."{c}"' for c in _VALUE_COLUMNS)


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


def rollup_fingerprint(interval: str, base: pd.DataFrame) -> str:
    """The fingerprint of ``interval`` candles built from the 1m candles ``base`` (exactly those
    inside the returned buckets). Defined on the 1m data, which every backend stores and returns
    bit for bit, because sums of floats aggregated in another order (a TimescaleDB aggregate, a
    recompressed chunk) may differ in the last bit: the same 1m data gives the same fingerprint on
    SQLite, PostgreSQL and TimescaleDB."""
    if base.empty:
        return "empty"
    canonical = f"{interval}|{frame_fingerprint(base)}"
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CandleRead:
    """A read of one series: the candles and their canonical fingerprint (see
    :func:`rollup_fingerprint`)."""

    frame: pd.DataFrame
    fingerprint: str


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
        rebuilt: tuple[str, ...] = ()
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            if self.is_postgres:
                # Serialise concurrent first starts (several Dagster runs at once).
                conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))
            metadata.create_all(conn)
            if self.is_postgres and timescale.is_available(conn):
                rebuilt = timescale.enable(conn, retention_days=retention_days).rebuilt_aggregates
        self._timescale = None
        if rebuilt:  # new or redefined aggregates start empty: build them from the stored 1m
            with translate_db_errors(self.engine), self._autocommit() as conn:
                timescale.refresh_aggregates(conn, None, None, views=rebuilt)

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
        if written and key.interval == BASE_INTERVAL:
            first = pd.Timestamp(int(open_ms[0]), unit="ms", tz="UTC")
            last = pd.Timestamp(int(open_ms[-1]), unit="ms", tz="UTC")
            self.refresh_rollups(first, last + pd.Timedelta(minutes=1))
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
        if self.has_timescale:
            # Updating candles in columnstore chunks decompresses them; TimescaleDB caps that at
            # 100k rows per transaction by default, which a month of corrections exceeds.
            conn.exec_driver_sql(
                "SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0"
            )
        conn.exec_driver_sql(
            "CREATE TEMP TABLE candles_stage (LIKE candles INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        copy_sql = f"COPY candles_stage ({columns}) FROM STDIN (FORMAT binary)"
        with raw.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.write(payload)
        # Only new or changed candles reach the INSERT: an unchanged re-ingest writes nothing,
        # so it neither leaves dead tuples nor decompresses a columnstore chunk.
        result = conn.exec_driver_sql(
            f"INSERT INTO candles ({columns}) SELECT {_STAGED_COLUMNS} FROM candles_stage s "
            "LEFT JOIN candles c ON c.exchange = %(exchange)s AND c.symbol = %(symbol)s "
            'AND c."interval" = %(interval)s AND c.open_time BETWEEN %(lo)s AND %(hi)s '
            "AND c.open_time = s.open_time "
            f"WHERE c.open_time IS NULL OR {_STAGED_DIFFERS} " + _on_conflict("IS DISTINCT FROM"),
            {
                "exchange": key.exchange,
                "symbol": key.symbol,
                "interval": key.interval,
                "lo": pd.Timestamp(int(open_ms[0]), unit="ms", tz="UTC").to_pydatetime(),
                "hi": pd.Timestamp(int(open_ms[-1]), unit="ms", tz="UTC").to_pydatetime(),
            },
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
        if deleted.rowcount:
            self.refresh_rollups(None, cutoff)
        return int(deleted.rowcount)

    def refresh_rollups(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> bool:
        """Bring the TimescaleDB continuous aggregates up to date over ``[start, end)`` (widened
        to whole days; None: unbounded). Every write of the store calls it, so reads never wait
        for a background policy; False (nothing to do) where rollups are resampled on read."""
        if not (self.is_postgres and self.has_timescale):
            return False
        with translate_db_errors(self.engine), self._autocommit() as conn:
            timescale.refresh_aggregates(conn, start, end)
        return True

    def _autocommit(self) -> Connection:
        """A connection outside any transaction block, which ``CALL
        refresh_continuous_aggregate`` requires."""
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

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
        if result.rowcount and key.interval == BASE_INTERVAL:
            self.refresh_rollups(start, end)
        return int(result.rowcount)

    # -- reads --------------------------------------------------------------------------------

    def read(
        self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp, *, require: bool = False
    ) -> pd.DataFrame:
        """The candles of ``key`` opening in ``[start, end)`` as a candle frame.

        An interval that is not stored itself is built from the stored 1m candles: from the
        TimescaleDB continuous aggregate where there is one, otherwise by resampling on read;
        either way exactly the buckets resampling gives (complete, none reaching past ``end``).
        With ``require`` an empty result raises :class:`NoDataError` with the command to run."""
        return self.read_with_fingerprint(key, start, end, require=require, fingerprint=False).frame

    def read_with_fingerprint(
        self,
        key: SeriesKey,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        require: bool = False,
        fingerprint: bool = True,
    ) -> CandleRead:
        """:meth:`read` plus the canonical fingerprint of what was read: of the frame itself for
        a stored interval, of the underlying 1m candles for a rollup (see
        :func:`rollup_fingerprint`). ``fingerprint=False`` skips computing it ("")."""
        with translate_db_errors(self.engine):
            frame = self._read_exact(key, start, end)
            digest = frame_fingerprint(frame) if fingerprint else ""
            if frame.empty and key.interval != BASE_INTERVAL:
                frame, base = self._read_rollup(key, start, end)
                if fingerprint:
                    if base is None and not frame.empty:
                        width = pd.Timedelta(milliseconds=interval_ms(key.interval))
                        base = self._read_exact(
                            key.model_copy(update={"interval": BASE_INTERVAL}),
                            frame.index[0],
                            frame.index[-1] + width,
                        )
                    digest = rollup_fingerprint(key.interval, base if base is not None else frame)
        if require and frame.empty:
            raise NoDataError(
                f"no candles for {key.symbol} {key.interval} ({key.exchange}) in "
                f"[{start.isoformat()}, {end.isoformat()}); run `cryptota ingest --symbols "
                f"{key.symbol} --start {start.date()} --end {end.date()}` first"
            )
        return CandleRead(frame, digest)

    def _read_rollup(
        self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp
    ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """``key``'s candles built from the stored 1m ones, and those 1m candles when they were
        read anyway (None from a continuous aggregate)."""
        base_key = key.model_copy(update={"interval": BASE_INTERVAL})
        width = pd.Timedelta(milliseconds=interval_ms(key.interval))
        if self.is_postgres and key.interval in ROLLUP_INTERVALS and self.has_timescale:
            return self._read_aggregate(key, start, end, width), None
        base = self._read_exact(base_key, start.floor(width), end)
        frame = resample_candles(base, BASE_INTERVAL, key.interval)
        frame = frame[(frame.index >= start) & (frame.index < end)]
        if frame.empty:
            return frame, base.iloc[:0]
        inside = (base.index >= frame.index[0]) & (base.index < frame.index[-1] + width)
        return frame, base[inside]

    def _read_aggregate(
        self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp, width: pd.Timedelta
    ) -> pd.DataFrame:
        """Buckets of the continuous aggregate wholly inside ``[start, end)``, minus a last one
        still forming (its newest 1m candle is not its last minute and no candle follows it
        before ``end``): the rule :func:`~cryptota_core.market.resample.resample_candles`
        applies, so both paths return the same buckets."""
        sql = timescale.read_buckets_sql(_QUOTED).format(
            view=timescale.aggregate_view(key.interval)
        )
        params = [key.exchange, key.symbol, start.to_pydatetime(), (end - width).to_pydatetime()]
        kinds = [*_COPY_KINDS, "i"]  # + last_open_time
        values = pg_copy.decode(self._copy_out(sql, params), kinds)
        frame = candle_frame_from_arrays(
            pg_timestamp_to_ms(values[0]),
            {c: values[i + 1] for i, c in enumerate(_VALUE_COLUMNS)},
        )
        if frame.empty:
            return frame
        last_bucket = frame.index[-1]
        newest = pd.Timestamp(
            int(pg_timestamp_to_ms(values[len(kinds) - 1])[-1]), unit="ms", tz="UTC"
        )
        base_step = pd.Timedelta(minutes=1)
        if newest < last_bucket + width - base_step:
            base_key = key.model_copy(update={"interval": BASE_INTERVAL})
            if self._read_exact(base_key, last_bucket + width, end).empty:
                frame = frame.iloc[:-1]
        return frame

    def _copy_out(self, sql: str, params: list[Any]) -> bytes:
        """The bytes of a ``COPY ... TO STDOUT (FORMAT binary)`` query."""
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur, cur.copy(sql, params) as copy:
                return b"".join(bytes(chunk) for chunk in copy)

    def _read_exact(self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """The stored candles of exactly ``key``'s interval (no rollup)."""
        if self.is_postgres:
            return self._read_postgres(key, start, end)
        return self._read_sqlite(key, start, end)

    def _read_postgres(
        self, key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        params: list[Any] = [
            key.exchange,
            key.symbol,
            key.interval,
            start.to_pydatetime(),
            end.to_pydatetime(),
        ]
        sql = (
            f"COPY (SELECT open_time, {_QUOTED} FROM candles "
            'WHERE exchange = %s AND symbol = %s AND "interval" = %s '
            "AND open_time >= %s AND open_time < %s ORDER BY open_time) TO STDOUT (FORMAT binary)"
        )
        values = pg_copy.decode(self._copy_out(sql, params), _COPY_KINDS)
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
        """The canonical fingerprint of what :meth:`read` returns for ``[start, end)``, the same
        on every backend (see :meth:`read_with_fingerprint`)."""
        return self.read_with_fingerprint(key, start, end).fingerprint

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
