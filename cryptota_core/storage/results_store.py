"""The results store: backtest runs, their trades and equity curves, and the leaderboard.

A backtest partition (exchange × symbol × interval × parameter set × window × engine) has one
``run_key``. Saving it deletes whatever that run_key held and inserts the new rows, all in one
transaction, so a re-run, an orchestrator retry or two concurrent runs of the same partition leave
exactly one copy (DESIGN §3). On PostgreSQL concurrent writers of one run_key are serialised by a
transaction-scoped advisory lock — without it both would find nothing to delete and the second
insert would fail on the unique run_key — and the equity curve goes in through binary ``COPY``
(half a million points in well under a second). On SQLite the database-wide write lock does the
serialising and ``executemany`` the bulk insert.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, case, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from cryptota_core.backtest.result import HEADLINE_METRICS, BacktestResult
from cryptota_core.errors import InvalidInputError, NoDataError
from cryptota_core.numbers import finite_or_none
from cryptota_core.storage import pg_copy
from cryptota_core.storage.database import create_store_engine, translate_db_errors
from cryptota_core.storage.pg_copy import ms_to_pg_timestamp, pg_timestamp_to_ms
from cryptota_core.storage.schema import (
    SLUG_LENGTH,
    backtest_results,
    backtest_trades,
    equity_curves,
    metadata,
    optimization_runs,
    paper_orders,
    param_sets,
    utc_now,
    walk_forward_windows,
)
from cryptota_core.trades import TRADE_COLUMNS, trades_frame

log = logging.getLogger(__name__)

RESULT_TABLES = (
    param_sets,
    backtest_results,
    backtest_trades,
    equity_curves,
    optimization_runs,
    walk_forward_windows,
    paper_orders,
)
"""The tables this store owns (the candle tables belong to the candle store)."""

_HEADER_COLUMNS = (
    "interval",
    "strategy",
    "slug",
    "engine",
    "bars",
    "cash",
    "commission",
    "slippage",
    "stake",
    "rejected_orders",
    "equity_final",
    "metrics",
)
"""Columns of ``backtest_results`` that hold a field of :meth:`BacktestResult.to_dict` as is (the
window, params and provenance are written apart). The :data:`HEADLINE_METRICS` are also copied
out of ``metrics`` into columns of their own, so leaderboards sort on plain columns."""

LOWER_IS_BETTER: frozenset[str] = frozenset(
    {
        "annual_volatility",
        "downside_risk",
        "ulcer_index",
        "max_drawdown_duration_bars",
        "max_drawdown_duration_days",
        "max_consecutive_losses",
        "avg_trade_duration_bars",
        "max_trade_duration_bars",
        "total_commission",
    }
)
"""Metrics where a smaller value ranks higher. Drawdowns, VaR and CVaR are negative numbers
(empyrical's convention), so for them larger — closer to zero — is already better."""

_SLUG = re.compile(r"[A-Za-z0-9._~-]+")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_KEY_TEXT = re.compile(r"[A-Za-z0-9._-]+")

LEADERBOARD_COLUMNS: tuple[str, ...] = (
    "exchange",
    "symbol",
    "strategy",
    "rank",
    "slug",
    "value",
    "params",
    "engine",
    "interval",
    "window_start",
    "window_end",
    "bars",
    *HEADLINE_METRICS,
    "equity_final",
    "run_key",
    "created_at",
    "note",
)
"""Columns of :meth:`ResultsStore.leaderboard`; ``value`` is the ranking metric's value,
``note`` says why a row deserves a second look (:func:`leaderboard_note`)."""
_RANKED_COLUMNS = LEADERBOARD_COLUMNS[:-1]
"""The leaderboard's columns the query selects (all but ``note``)."""


def leaderboard_note(
    metric: str, value: float | None, trades: Any, min_trades: int, open_trades: Any = None
) -> str:
    """Why a leaderboard row deserves a second look, or ``""``: fewer trades than the rule asks
    (it ranks after the runs that meet it), an undefined ranking value (a blank cell), or a
    position still open at the end (its return and ratios include that position marked at the
    last close, while ``trade_count`` counts closed round trips only: a run of 0 trades can
    show a return)."""
    count = None if trades is None or pd.isna(trades) else int(trades)
    notes = []
    if count is not None and count < min_trades:
        notes.append(f"< {min_trades} trades")
    if value is None or not math.isfinite(value):
        reason = "no trades" if count == 0 else "returns without dispersion"
        notes.append(f"{metric} undefined ({reason})")
    if open_trades is not None and not pd.isna(open_trades) and open_trades > 0:
        notes.append("position open at the end")
    return "; ".join(notes)


def validate_slug(slug: str) -> str:
    """Return ``slug`` if it can name a parameter set, else raise :class:`InvalidInputError`.

    Slugs are Dagster partition keys and URL path segments: Dagster reserves ``| , [ ]`` in
    partition keys and a URL would need escaping for anything outside the unreserved set."""
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug) or len(slug) > SLUG_LENGTH:
        raise InvalidInputError(
            f"invalid parameter-set slug {slug!r}: use at most {SLUG_LENGTH} URL-safe characters "
            "(letters, digits, - . _ ~; never | , [ ] or spaces), e.g. rsi-p14-os30-ob70"
        )
    return slug


def _check_name(value: str, what: str, pattern: re.Pattern[str], example: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInputError(f"invalid {what} {value!r}: use a name such as {example}")
    return value


def _utc(ts: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(ts)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def backtest_run_key(
    *,
    exchange: str,
    symbol: str,
    interval: str,
    strategy: str,
    slug: str,
    start: Any,
    end: Any,
    engine: str,
) -> str:
    """The deterministic key of one backtest partition: the first 32 hex digits of the SHA-256
    of its canonical JSON. The same partition always gets the same key on every machine, which
    is what makes saving it idempotent."""
    identity = [
        exchange,
        symbol,
        interval,
        strategy,
        slug,
        _utc(start).isoformat(),
        _utc(end).isoformat(),
        engine,
    ]
    canonical = json.dumps(identity, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _json_params(params: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        return dict(json.loads(json.dumps(dict(params), allow_nan=False)))
    except (TypeError, ValueError) as e:
        raise InvalidInputError(
            f"{what} must be a JSON object of finite numbers, strings and booleans "
            f'({e}); pass e.g. {{"period": 14}}'
        ) from e


@dataclass(frozen=True)
class StoredBacktest:
    """A saved run: the :class:`BacktestResult` (orders are not stored, so ``result.orders`` is
    empty) and where it came from."""

    run_key: str
    exchange: str
    symbol: str
    candle_fingerprint: str
    code_version: str
    run_id: str | None
    created_at: pd.Timestamp
    result: BacktestResult


class ResultsStore:
    """Backtest results in the same database as the candles (TimescaleDB, PostgreSQL, SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    @classmethod
    def from_url(cls, url: str, *, create: bool = True) -> ResultsStore:
        """Connect to ``url`` and (by default) create the result tables that are missing."""
        store = cls(create_store_engine(url))
        if create:
            store.create_schema()
        return store

    def create_schema(self) -> None:
        """Create the result tables that are missing. Safe to call from many processes at once:
        on PostgreSQL the same advisory lock as the candle store serialises first starts."""
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))
            metadata.create_all(conn, tables=list(RESULT_TABLES))

    # -- parameter sets -----------------------------------------------------------------------

    def register_param_set(self, strategy: str, slug: str, params: Mapping[str, Any]) -> None:
        """Record the parameter set ``slug`` of ``strategy``; registering it again updates its
        params and keeps its ``created_at``."""
        self._check_param_set(strategy, slug)
        row = {"slug": slug, "strategy": strategy, "params": _json_params(params, "params")}
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            self._upsert_param_set(conn, row, update=True)

    def param_sets(self, strategy: str | None = None) -> pd.DataFrame:
        """Registered parameter sets (slug, strategy, params, created_at), by slug."""
        query = select(param_sets).order_by(param_sets.c.slug)
        if strategy is not None:
            query = query.where(param_sets.c.strategy == strategy)
        with translate_db_errors(self.engine), self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        frame = pd.DataFrame(
            [dict(r) for r in rows], columns=["slug", "strategy", "params", "created_at"]
        )
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        return frame

    @staticmethod
    def _check_param_set(strategy: str, slug: str) -> None:
        _check_name(strategy, "strategy name", _NAME, "rsi or rsi_ma")
        validate_slug(slug)

    def _upsert_param_set(self, conn: Connection, row: dict[str, Any], *, update: bool) -> None:
        row = {**row, "created_at": utc_now()}
        dialect: Any = postgresql if self.is_postgres else sqlite
        stmt = dialect.insert(param_sets).values(row)
        if update:
            stmt = stmt.on_conflict_do_update(
                index_elements=["slug"],
                set_={"strategy": stmt.excluded.strategy, "params": stmt.excluded.params},
            )
        else:
            # Saving a backtest only makes sure the slug exists; DO NOTHING takes no row lock on
            # an existing row, so parallel saves of one param set on many symbols never queue.
            stmt = stmt.on_conflict_do_nothing(index_elements=["slug"])
        conn.execute(stmt)

    # -- backtests ----------------------------------------------------------------------------

    def save_backtest(
        self,
        result: BacktestResult,
        *,
        exchange: str,
        symbol: str,
        candle_fingerprint: str,
        code_version: str,
        run_id: str | None = None,
    ) -> str:
        """Store ``result`` (its row, trades and equity curve) as the one copy of its partition
        and return the partition's run_key. Everything happens in one transaction: a failure
        leaves the previous copy untouched."""
        _check_name(exchange, "exchange", _KEY_TEXT, "binance or synthetic")
        _check_name(symbol, "symbol", _KEY_TEXT, "BTCUSDT")
        self._check_param_set(result.strategy, result.slug)
        params = _json_params(result.params, f"params of {result.slug}")
        start, end = _utc(result.start), _utc(result.end)
        key = backtest_run_key(
            exchange=exchange,
            symbol=symbol,
            interval=result.interval,
            strategy=result.strategy,
            slug=result.slug,
            start=start,
            end=end,
            engine=result.engine,
        )
        open_ms, equity, benchmark = _equity_arrays(result)
        header = result.to_dict(trades=False)
        trade_count = header["metrics"].get("trade_count")
        row = {
            **{column: header[column] for column in _HEADER_COLUMNS},
            "run_key": key,
            "exchange": exchange,
            "symbol": symbol,
            "params": params,
            "window_start": start.to_pydatetime(),
            "window_end": end.to_pydatetime(),
            "candle_fingerprint": candle_fingerprint,
            "code_version": code_version,
            "dagster_run_id": run_id,
            **{name: header["metrics"].get(name) for name in HEADLINE_METRICS},
            "trade_count": int(trade_count) if trade_count is not None else None,
            "created_at": utc_now(),
        }
        trades = _trade_rows(key, result.trades)
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            if self.is_postgres:
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
                )
            self._delete_runs(conn, backtest_results.c.run_key == key)
            conn.execute(backtest_results.insert(), row)
            if trades:
                conn.execute(backtest_trades.insert(), trades)
            if len(open_ms):
                if self.is_postgres:
                    _copy_equity_postgres(conn, key, open_ms, equity, benchmark)
                else:
                    conn.exec_driver_sql(
                        "INSERT INTO equity_curves (run_key, open_time, equity, benchmark) "
                        "VALUES (?, ?, ?, ?)",
                        list(
                            zip(
                                [key] * len(open_ms),
                                open_ms.tolist(),
                                equity.tolist(),
                                benchmark.tolist(),
                                strict=True,
                            )
                        ),
                    )
            # Last, so a new slug's row is held only for the commit: saves of one new param set
            # on many symbols at once wait for each other no longer than that.
            self._upsert_param_set(
                conn,
                {"slug": result.slug, "strategy": result.strategy, "params": params},
                update=False,
            )
        log.debug(
            "saved backtest %s %s %s (%d trades, %d equity points)",
            symbol,
            result.slug,
            key,
            len(trades),
            len(open_ms),
            extra={"run_key": key, "symbol": symbol, "slug": result.slug},
        )
        return key

    def _delete_runs(self, conn: Connection, where: Any) -> int:
        """Delete the runs matching ``where`` with their trades and equity (children first, as
        SQLite does not enforce the cascading foreign keys)."""
        keys = select(backtest_results.c.run_key).where(where).scalar_subquery()
        conn.execute(delete(equity_curves).where(equity_curves.c.run_key.in_(keys)))
        conn.execute(delete(backtest_trades).where(backtest_trades.c.run_key.in_(keys)))
        return int(conn.execute(delete(backtest_results).where(where)).rowcount)

    def load_backtest(self, run_key: str) -> StoredBacktest:
        """The saved run ``run_key`` with its trades and equity curve, read in one snapshot-
        consistent transaction. Raises :class:`NoDataError` if there is no such run."""
        with translate_db_errors(self.engine), self.engine.connect() as conn:
            if self.is_postgres:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                if not self.is_postgres:
                    # pysqlite opens no transaction for SELECTs: without an explicit one a
                    # concurrent save could land between the three reads below.
                    conn.exec_driver_sql("BEGIN")
                return self._load(conn, run_key)

    def backtests_of_run(self, run_id: str) -> list[StoredBacktest]:
        """Every result the Dagster run ``run_id`` stored (an ad-hoc backtest stores one), by
        symbol and slug, read in one snapshot-consistent transaction. Empty when the run stored
        none, or when later runs of the same partitions have replaced them since (a partition
        keeps one copy, recording the run that wrote it)."""
        query = (
            select(backtest_results.c.run_key)
            .where(backtest_results.c.dagster_run_id == run_id)
            .order_by(
                backtest_results.c.symbol, backtest_results.c.slug, backtest_results.c.run_key
            )
        )
        with translate_db_errors(self.engine), self.engine.connect() as conn:
            if self.is_postgres:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                if not self.is_postgres:
                    conn.exec_driver_sql("BEGIN")  # see load_backtest
                keys = conn.execute(query).scalars().all()
                return [self._load(conn, key) for key in keys]

    def _load(self, conn: Connection, run_key: str) -> StoredBacktest:
        row = (
            conn.execute(select(backtest_results).where(backtest_results.c.run_key == run_key))
            .mappings()
            .first()
        )
        if row is None:
            raise NoDataError(
                f"no backtest result with run key {run_key!r}; list saved runs with the "
                "leaderboard or run the backtest first"
            )
        trade_rows = conn.execute(
            select(*[backtest_trades.c[c] for c in TRADE_COLUMNS])
            .where(backtest_trades.c.run_key == run_key)
            .order_by(backtest_trades.c.trade_no)
        ).all()
        if self.is_postgres:
            times, equity, benchmark = _read_equity_postgres(conn, run_key)
        else:
            times, equity, benchmark = _read_equity_sqlite(conn, run_key)
        index = pd.DatetimeIndex(
            pd.to_datetime(times, unit="ms", utc=True), name="open_time"
        ).as_unit("ns")
        result = BacktestResult.from_dict(
            {**row, "start": row["window_start"], "end": row["window_end"]},
            equity=pd.Series(equity, index=index, name="equity", dtype="float64"),
            benchmark=pd.Series(benchmark, index=index.copy(), name="benchmark", dtype="float64"),
            trades=trades_frame(trade_rows),
        )
        return StoredBacktest(
            run_key=run_key,
            exchange=row["exchange"],
            symbol=row["symbol"],
            candle_fingerprint=row["candle_fingerprint"],
            code_version=row["code_version"],
            run_id=row["dagster_run_id"],
            created_at=_utc(row["created_at"]),
            result=result,
        )

    def count_runs(self) -> int:
        """Number of saved backtest runs."""
        with translate_db_errors(self.engine), self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(backtest_results)).scalar_one()
            )

    # -- leaderboard and retention -----------------------------------------------------------

    def leaderboard(
        self,
        symbol: str | None = None,
        strategy: str | None = None,
        metric: str = "sharpe_ratio",
        top: int = 10,
        *,
        exchange: str | None = None,
        ascending: bool | None = None,
        latest_window: bool = True,
        min_trades: int = 0,
    ) -> pd.DataFrame:
        """The best ``top`` runs per (exchange, symbol, strategy) by ``metric``.

        Runs with fewer than ``min_trades`` trades rank after every run with at least that many
        (and are marked in the ``note`` column): a high Sharpe ratio of one or two trades is
        luck, not a strategy. ``note`` also says why a ranking value is undefined.

        With ``latest_window`` (the default) only runs over each series' most recent window
        compete: the nightly refresh moves the window every day, and yesterday's run of a
        parameter set must not rank beside today's. Runs whose metric is undefined (NULL) rank
        last, never first. Larger is better except
        for the metrics in :data:`LOWER_IS_BETTER` (``ascending`` overrides). Ties break on slug
        and run_key so the order is stable. Columns: :data:`LEADERBOARD_COLUMNS`."""
        if not isinstance(top, int) or top < 1:
            raise InvalidInputError(f"top must be a positive integer, got {top!r}; e.g. top=10")
        _check_name(metric, "metric name", _NAME, "sharpe_ratio or total_return")
        if not isinstance(min_trades, int) or isinstance(min_trades, bool) or min_trades < 0:
            raise InvalidInputError(
                f"min_trades must be a whole number >= 0, got {min_trades!r}; e.g. min_trades=5"
            )
        if ascending is None:
            ascending = metric in LOWER_IS_BETTER
        t = backtest_results
        value: Any = t.c[metric] if metric in HEADLINE_METRICS else t.c.metrics[metric].as_float()
        order = value.asc() if ascending else value.desc()
        rank = (
            func.row_number()
            .over(
                partition_by=[t.c.exchange, t.c.symbol, t.c.strategy],
                order_by=[
                    case((func.coalesce(t.c.trade_count, 0) < min_trades, 1), else_=0),
                    order.nulls_last(),
                    t.c.slug,
                    t.c.run_key,
                ],
            )
            .label("rank")
        )
        inner = select(
            *[t.c[c] for c in _RANKED_COLUMNS if c not in ("rank", "value")],
            value.label("value"),
            t.c.metrics["open_trades"].as_float().label("open_trades"),
            rank,
        )
        for column, wanted in (("exchange", exchange), ("symbol", symbol), ("strategy", strategy)):
            if wanted is not None:
                inner = inner.where(t.c[column] == wanted)
        if latest_window:
            other = backtest_results.alias("other")
            newest = (
                select(func.max(other.c.window_end))
                .where(
                    other.c.exchange == t.c.exchange,
                    other.c.symbol == t.c.symbol,
                    other.c.interval == t.c.interval,
                )
                .scalar_subquery()
            )
            inner = inner.where(t.c.window_end == newest)
        ranked = inner.subquery()
        query = (
            select(*[ranked.c[c] for c in _RANKED_COLUMNS], ranked.c.open_trades)
            .where(ranked.c.rank <= top)
            .order_by(ranked.c.exchange, ranked.c.symbol, ranked.c.strategy, ranked.c.rank)
        )
        with translate_db_errors(self.engine), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=[*_RANKED_COLUMNS, "open_trades"])
        open_trades = frame.pop("open_trades")
        for column in ("window_start", "window_end", "created_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        floats = ["value", *[m for m in HEADLINE_METRICS if m != "trade_count"], "equity_final"]
        frame[floats] = frame[floats].astype("float64")
        frame["trade_count"] = frame["trade_count"].astype("Int64")
        frame[["rank", "bars"]] = frame[["rank", "bars"]].astype("int64")
        frame["note"] = [
            leaderboard_note(metric, value, trades, min_trades, still_open)
            for value, trades, still_open in zip(
                frame["value"], frame["trade_count"], open_trades, strict=True
            )
        ]
        frame.attrs["metric"] = metric
        frame.attrs["min_trades"] = min_trades
        log.debug("leaderboard by %s: %d runs ranked", metric, len(frame), extra={"metric": metric})
        return frame

    def purge_before(self, cutoff: datetime | pd.Timestamp) -> int:
        """Retention clean-up: delete the backtest runs created before ``cutoff`` (with their
        trades and equity curves) in one transaction; return how many runs went. Parameter sets,
        optimisation runs and paper orders are kept."""
        when = _utc(cutoff).to_pydatetime()
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            deleted = self._delete_runs(conn, backtest_results.c.created_at < when)
        log.info("purged %d backtest runs created before %s", deleted, when.isoformat())
        return deleted


# -- row conversion ---------------------------------------------------------------------------


def _equity_arrays(result: BacktestResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open times (epoch ms), equity and the benchmark aligned on the equity's index."""
    index = result.equity.index
    if not isinstance(index, pd.DatetimeIndex):
        raise InvalidInputError(
            "the equity curve must be indexed by candle open_time (a DatetimeIndex), got "
            f"{type(index).__name__}"
        )
    if not index.is_unique:
        raise InvalidInputError("the equity curve has duplicate open times; one value per candle")
    utc_index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    open_ms = utc_index.as_unit("ns").asi8 // 1_000_000
    equity = result.equity.to_numpy(dtype="float64", na_value=np.nan)
    benchmark_series = result.benchmark
    if len(benchmark_series) and not benchmark_series.index.equals(index):
        benchmark_series = benchmark_series.reindex(index)
    if len(benchmark_series) == len(index):
        benchmark = benchmark_series.to_numpy(dtype="float64", na_value=np.nan)
    else:
        benchmark = np.full(len(index), np.nan)
    return open_ms, equity, benchmark


def _copy_equity_postgres(
    conn: Connection, key: str, open_ms: np.ndarray, equity: np.ndarray, benchmark: np.ndarray
) -> None:
    payload = pg_copy.encode(
        [
            ("run_key", key.encode()),
            ("open_time", ms_to_pg_timestamp(open_ms)),
            ("equity", equity),
            ("benchmark", benchmark),
        ],
        len(open_ms),
    )
    raw = conn.connection.driver_connection
    assert raw is not None
    sql = "COPY equity_curves (run_key, open_time, equity, benchmark) FROM STDIN (FORMAT binary)"
    with raw.cursor() as cur, cur.copy(sql) as copy:
        copy.write(payload)


def _read_equity_postgres(conn: Connection, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary COPY out; rows with NULLs (not written by this store) fall back to a SELECT."""
    raw = conn.connection.driver_connection
    assert raw is not None
    sql = (
        "COPY (SELECT open_time, equity, benchmark FROM equity_curves WHERE run_key = %s "
        "ORDER BY open_time) TO STDOUT (FORMAT binary)"
    )
    with raw.cursor() as cur, cur.copy(sql, [key]) as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    try:
        values = pg_copy.decode(data, ["i", "f", "f"])
    except ValueError:
        return _read_equity_select(conn, key)
    return pg_timestamp_to_ms(values[0]), values[1], values[2]


def _read_equity_select(conn: Connection, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = conn.execute(
        select(equity_curves.c.open_time, equity_curves.c.equity, equity_curves.c.benchmark)
        .where(equity_curves.c.run_key == key)
        .order_by(equity_curves.c.open_time)
    ).all()
    times = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], utc=True)).as_unit("ns")
    return (
        times.asi8 // 1_000_000,
        np.array([r[1] for r in rows], dtype="float64"),
        np.array([r[2] for r in rows], dtype="float64"),
    )


def _read_equity_sqlite(conn: Connection, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = conn.connection.driver_connection
    assert raw is not None
    rows = raw.execute(
        "SELECT open_time, equity, benchmark FROM equity_curves WHERE run_key = ? "
        "ORDER BY open_time",
        (key,),
    ).fetchall()
    if not rows:
        empty = np.array([], dtype="float64")
        return np.array([], dtype="int64"), empty, empty.copy()
    times, equity, benchmark = zip(*rows, strict=True)
    # SQLite keeps a NaN REAL as NULL; float64 turns None back into NaN.
    return (
        np.array(times, dtype="int64"),
        np.array(equity, dtype="float64"),
        np.array(benchmark, dtype="float64"),
    )


def _trade_rows(key: str, trades: pd.DataFrame) -> list[dict[str, Any]]:
    missing = [c for c in TRADE_COLUMNS if c not in trades.columns]
    if missing:
        raise InvalidInputError(
            f"the trades frame lacks {', '.join(missing)}; it needs exactly TRADE_COLUMNS"
        )
    rows: list[dict[str, Any]] = []
    records: Iterable[Any] = trades.loc[:, list(TRADE_COLUMNS)].itertuples(index=False)
    for number, trade in enumerate(records):
        rows.append(
            {
                "run_key": key,
                "trade_no": number,
                "entry_time": _utc(trade.entry_time).to_pydatetime(),
                "exit_time": None
                if pd.isna(trade.exit_time)
                else _utc(trade.exit_time).to_pydatetime(),
                "side": str(trade.side),
                "size": finite_or_none(trade.size),
                "entry_price": finite_or_none(trade.entry_price),
                "exit_price": finite_or_none(trade.exit_price),
                "pnl": finite_or_none(trade.pnl),
                "pnl_pct": finite_or_none(trade.pnl_pct),
                "commission": finite_or_none(trade.commission),
                "bars": int(trade.bars),
                "is_open": bool(trade.is_open),
            }
        )
    return rows


def best_per_symbol(board: pd.DataFrame) -> dict[str, str]:
    """The top parameter set of each symbol over all strategies, from a :meth:`ResultsStore.
    leaderboard` frame, by the leaderboard's own rule: each strategy's rank 1, the runs with at
    least the board's ``min_trades`` (``board.attrs``) before the others, then best value
    first — so a run of two lucky trades is not the symbol's best while one that trades is."""
    min_trades = int(board.attrs.get("min_trades", 0))
    leaders = board[board["rank"] == 1].assign(
        _few_trades=lambda rows: rows["trade_count"].fillna(0) < min_trades,
        _undefined=lambda rows: rows["value"].isna(),
    )
    leaders = leaders.sort_values(
        ["_few_trades", "_undefined", "value"], ascending=[True, True, False], kind="stable"
    )
    return dict(leaders.drop_duplicates("symbol").loc[:, ["symbol", "slug"]].itertuples(False))
