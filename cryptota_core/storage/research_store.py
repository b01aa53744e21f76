"""Research results: optimisation runs, walk-forward windows and paper orders.

Beside :class:`~cryptota_core.storage.results_store.ResultsStore` (which owns the tables and the
backtest runs) on the same database. Every row keeps its lineage — series, window, candle
fingerprint, code version, Dagster run id — and every write is idempotent: an optimisation or a
walk-forward report replaces the rows of its key in one transaction (under an advisory lock on
PostgreSQL, as the backtest runs are), and a paper order is inserted once per key (the same
signal on the same candle never becomes two orders).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from cryptota_core.backtest.result import iso_utc
from cryptota_core.research.lineage import Lineage
from cryptota_core.research.optimize import OptimizationResult, optimization_key, top_records
from cryptota_core.research.signals import PaperOrder
from cryptota_core.research.walk_forward import WalkForwardResult
from cryptota_core.storage.database import create_store_engine, translate_db_errors
from cryptota_core.storage.schema import (
    optimization_runs,
    paper_orders,
    utc_now,
    walk_forward_windows,
)

log = logging.getLogger(__name__)


class ResearchStore:
    """Optimisation runs, walk-forward windows and paper orders (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    @classmethod
    def from_url(cls, url: str) -> ResearchStore:
        """Connect to ``url``; the tables are created by ``ResultsStore.from_url``."""
        from cryptota_core.storage.results_store import ResultsStore

        ResultsStore(create_store_engine(url)).create_schema()
        return cls(create_store_engine(url))

    def _lock(self, conn: Connection, key: str) -> None:
        if self.is_postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})

    # -- optimisation -------------------------------------------------------------------------

    def save_optimization(self, result: OptimizationResult, lineage: Lineage) -> str:
        """Store ``result`` as the one copy of its search (series, grid, objective, window);
        return its run_key."""
        sweep = result.sweep
        key = optimization_key(
            exchange=lineage.exchange,
            symbol=lineage.symbol,
            interval=result.interval,
            spec=result.spec,
            objective=result.objective,
            start=sweep.candle_start,
            end=sweep.candle_end,
            min_trades=result.settings.min_trades,
        )
        top = top_records(result.top)
        checks = {c.slug: c for c in result.rechecks}
        for row in top:
            check = checks.get(row["slug"])
            row["recheck_engine"] = None if check is None else check.engine
            row["recheck_reproduced"] = None if check is None else check.reproduced
        row = {
            "run_key": key,
            "exchange": lineage.exchange,
            "symbol": lineage.symbol,
            "interval": result.interval,
            "strategy": result.strategy,
            "engine": result.best.engine,
            "grid": result.spec.grid,
            "objective": result.objective,
            "window_start": sweep.candle_start.to_pydatetime(),
            "window_end": sweep.candle_end.to_pydatetime(),
            "bars": sweep.bars,
            "candle_fingerprint": lineage.candle_fingerprint,
            "code_version": lineage.code_version,
            "dagster_run_id": lineage.run_id,
            "combinations": result.combinations,
            "best_slug": result.best_slug,
            "best_params": result.best_params,
            "best_score": result.best_score,
            "top_results": top,
            "statistics": {
                **result.statistics,
                "search": result.spec.model_dump(mode="json", exclude={"grid"}),
                "broker": result.broker.kwargs(),
                "best_metrics": result.best.headline(),
            },
            "created_at": utc_now(),
        }
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            self._lock(conn, key)
            conn.execute(delete(optimization_runs).where(optimization_runs.c.run_key == key))
            conn.execute(optimization_runs.insert(), row)
        log.info(
            "saved optimisation %s %s: best %s (%s %s)",
            lineage.symbol,
            result.strategy,
            result.best_slug,
            result.objective,
            result.best_score,
            extra={"run_key": key, "symbol": lineage.symbol},
        )
        return key

    def latest_optimizations(
        self, symbol: str | None = None, *, exchange: str | None = None
    ) -> pd.DataFrame:
        """The newest optimisation run per (exchange, symbol, interval, strategy): the current
        best parameters of each strategy on each series."""
        t = optimization_runs
        newest = (
            select(
                t.c.exchange,
                t.c.symbol,
                t.c.interval,
                t.c.strategy,
                func.max(t.c.created_at).label("at"),
            )
            .group_by(t.c.exchange, t.c.symbol, t.c.interval, t.c.strategy)
            .subquery()
        )
        query = select(t).join(
            newest,
            (t.c.exchange == newest.c.exchange)
            & (t.c.symbol == newest.c.symbol)
            & (t.c.interval == newest.c.interval)
            & (t.c.strategy == newest.c.strategy)
            & (t.c.created_at == newest.c.at),
        )
        if symbol is not None:
            query = query.where(t.c.symbol == symbol)
        if exchange is not None:
            query = query.where(t.c.exchange == exchange)
        query = query.order_by(t.c.exchange, t.c.symbol, t.c.strategy)
        with translate_db_errors(self.engine), self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        frame = pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in t.columns])
        for column in ("window_start", "window_end", "created_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    # -- walk-forward -------------------------------------------------------------------------

    def save_walk_forward(self, result: WalkForwardResult, lineage: Lineage) -> str:
        """Store every window of ``result`` under one run_key (replacing a previous report of the
        same series, grid, objective, split and data window); return the run_key."""
        first, last = result.windows[0], result.windows[-1]
        identity = [
            lineage.exchange,
            lineage.symbol,
            result.interval,
            result.spec.model_dump(mode="json", exclude={"max_sets"}),
            result.objective,
            result.anchored,
            result.in_sample_ratio,
            len(result.windows),
            iso_utc(first.in_sample_start),
            iso_utc(last.out_sample_end),
        ]
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
        now = utc_now()
        rows = [
            {
                "run_key": key,
                "window_no": w.window_no,
                "exchange": lineage.exchange,
                "symbol": lineage.symbol,
                "interval": result.interval,
                "strategy": result.strategy,
                "engine": "fast",
                "grid": result.spec.grid,
                "objective": result.objective,
                "in_sample_start": w.in_sample_start.to_pydatetime(),
                "in_sample_end": w.in_sample_end.to_pydatetime(),
                "out_sample_start": w.out_sample_start.to_pydatetime(),
                "out_sample_end": w.out_sample_end.to_pydatetime(),
                "candle_fingerprint": lineage.candle_fingerprint,
                "code_version": lineage.code_version,
                "dagster_run_id": lineage.run_id,
                "best_slug": w.best_slug,
                "best_params": w.best_params,
                "in_sample_score": w.in_sample_score,
                "out_sample_score": w.out_sample_score,
                "out_sample_return": w.out_sample_return,
                "out_sample_metrics": {
                    **w.out_sample_metrics,
                    "in_sample_annual_log_return": w.in_sample_annual_log_return,
                    "out_sample_annual_log_return": w.out_sample_annual_log_return,
                    "anchored": result.anchored,
                },
                "created_at": now,
            }
            for w in result.windows
        ]
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            self._lock(conn, key)
            conn.execute(delete(walk_forward_windows).where(walk_forward_windows.c.run_key == key))
            conn.execute(walk_forward_windows.insert(), rows)
        log.info(
            "saved walk-forward %s %s: %d windows",
            lineage.symbol,
            result.strategy,
            len(rows),
            extra={"run_key": key, "symbol": lineage.symbol},
        )
        return key

    def latest_walk_forward(
        self, symbol: str, strategy: str, exchange: str | None = None
    ) -> pd.DataFrame:
        """The windows of the newest walk-forward report of ``symbol`` and ``strategy``, in
        window order (empty when none was run)."""
        t = walk_forward_windows
        latest = select(t.c.run_key).where(t.c.symbol == symbol, t.c.strategy == strategy)
        if exchange is not None:
            latest = latest.where(t.c.exchange == exchange)
        latest = latest.order_by(t.c.created_at.desc()).limit(1)
        query = select(t).where(t.c.run_key == latest.scalar_subquery()).order_by(t.c.window_no)
        with translate_db_errors(self.engine), self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in t.columns])

    # -- paper orders -------------------------------------------------------------------------

    def save_paper_orders(self, orders: Sequence[PaperOrder], lineage: Lineage) -> int:
        """Insert the orders not placed yet (by :attr:`PaperOrder.order_key`); return how many
        were new."""
        if not orders:
            return 0
        rows = [
            {
                "order_key": o.order_key,
                "exchange": o.exchange,
                "symbol": o.symbol,
                "interval": o.interval,
                "strategy": o.strategy,
                "slug": o.slug,
                "params": o.params,
                "engine": o.engine,
                "signal_time": o.signal_time.to_pydatetime(),
                "side": o.side,
                "order_type": o.order_type,
                "price": o.price,
                "size": o.size,
                "status": "new",
                "window_start": o.window_start.to_pydatetime(),
                "window_end": o.window_end.to_pydatetime(),
                "candle_fingerprint": lineage.candle_fingerprint,
                "code_version": lineage.code_version,
                "dagster_run_id": lineage.run_id,
                "created_at": utc_now(),
            }
            for o in orders
        ]
        dialect: Any = postgresql if self.is_postgres else sqlite
        statement = (
            dialect.insert(paper_orders)
            .on_conflict_do_nothing(index_elements=["order_key"])
            .returning(paper_orders.c.order_key)
        )
        with translate_db_errors(self.engine), self.engine.begin() as conn:
            placed = conn.execute(statement, rows).all()  # RETURNING: the orders that were new
        return len(placed)

    def paper_orders(self, symbol: str | None = None) -> pd.DataFrame:
        """Placed paper orders, oldest first."""
        query = select(paper_orders).order_by(paper_orders.c.signal_time, paper_orders.c.id)
        if symbol is not None:
            query = query.where(paper_orders.c.symbol == symbol)
        with translate_db_errors(self.engine), self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        frame = pd.DataFrame(
            [dict(r) for r in rows], columns=[c.name for c in paper_orders.columns]
        )
        frame["signal_time"] = pd.to_datetime(frame["signal_time"], utc=True)
        return frame
