"""From what an engine recorded to a :class:`BacktestResult`: the trades rebuilt from the fills,
the orders frame and the metrics. Both engines (backtrader and fast) assemble their results
here, so they cannot drift; it imports neither backtrader nor an engine.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from cryptota_core.backtest.result import ORDER_COLUMNS, BacktestResult, empty_orders
from cryptota_core.market.intervals import interval_timedelta
from cryptota_core.strategies import Strategy, StrategyParams
from cryptota_core.strategies.base import Fill, OrderRecord
from cryptota_core.trades import TRADE_COLUMNS, empty_trades


def measured_result(
    spec: Strategy,
    model: StrategyParams,
    *,
    engine: str,
    interval: str,
    equity: pd.Series,
    trades: pd.DataFrame,
    benchmark: pd.Series,
    exposure_bars: int,
    rejected_orders: int,
    orders: pd.DataFrame,
    broker: tuple[float, float, float, float],
) -> BacktestResult:
    """A :class:`BacktestResult` with its metrics, from what an engine recorded: the one place
    both engines (backtrader and fast) turn a simulation into a result, so they cannot drift.
    ``broker`` is (cash, commission, slippage, stake)."""
    from cryptota_core.metrics import compute_metrics  # lazy: it loads numba; only a run needs it

    index = pd.DatetimeIndex(equity.index)
    cash, commission, slippage, stake = broker
    metrics = compute_metrics(
        equity, trades, interval=interval, benchmark=benchmark, exposure_bars=exposure_bars
    )
    return BacktestResult(
        strategy=spec.name,
        params=model.model_dump(mode="json"),
        slug=spec.slug(model),
        engine=engine,
        interval=interval,
        bars=len(index),
        start=index[0],
        end=index[-1] + interval_timedelta(interval),
        equity=equity,
        trades=trades,
        benchmark=benchmark,
        rejected_orders=rejected_orders,
        metrics=dict(metrics),
        orders=orders,
        cash=float(cash),
        commission=float(commission),
        slippage=float(slippage),
        stake=float(stake),
    )


def trades_from_fills(
    fills: Iterable[Fill], times: pd.DatetimeIndex, last_close: float
) -> pd.DataFrame:
    """Turn signed fills into the trades frame by first-in first-out lot matching.

    A fill against the open position closes the oldest lots first (splitting one when needed);
    whatever is left opens a new lot. Commission of a fill is shared among the lots it touches in
    proportion to size. ``pnl = size × (exit − entry) × direction − both commissions``. Lots still
    open at the end are reported with ``is_open`` True, ``exit_price = last_close``, ``exit_time``
    NaT, and only their entry commission (the broker values them the same way)."""
    lots: deque[list[float]] = deque()  # [bar, signed size, price, commission per unit]
    rows: list[tuple[Any, ...]] = []
    for fill in fills:
        remaining = fill.size
        tolerance = 1e-9 * abs(fill.size)
        comm_per_unit = fill.commission / abs(fill.size) if fill.size else 0.0
        while lots and abs(remaining) > tolerance and (lots[0][1] > 0) != (remaining > 0):
            lot = lots[0]
            qty = min(abs(remaining), abs(lot[1]))
            direction = 1.0 if lot[1] > 0 else -1.0
            comm = qty * (lot[3] + comm_per_unit)
            pnl = qty * (fill.price - lot[2]) * direction - comm
            rows.append(
                _trade_row(
                    times, int(lot[0]), fill.bar, direction, qty, lot[2], fill.price, pnl, comm
                )
            )
            lot[1] -= qty * direction
            remaining += qty * direction
            if abs(lot[1]) <= 1e-9 * qty or abs(lot[1]) <= tolerance:
                lots.popleft()
        if abs(remaining) > tolerance:
            lots.append([float(fill.bar), remaining, fill.price, comm_per_unit])
    for bar, size, price, cpu in lots:
        direction = 1.0 if size > 0 else -1.0
        qty = abs(size)
        comm = qty * cpu
        pnl = qty * (last_close - price) * direction - comm
        rows.append(_trade_row(times, int(bar), None, direction, qty, price, last_close, pnl, comm))
    if not rows:
        return empty_trades()
    trades = pd.DataFrame.from_records(rows, columns=list(TRADE_COLUMNS))
    trades["entry_time"] = bar_times(times, trades["entry_time"].to_numpy())
    trades["exit_time"] = bar_times(times, trades["exit_time"].to_numpy())
    return trades.astype({"bars": "int64", "is_open": "bool", "side": "object"})


def _trade_row(
    times: pd.DatetimeIndex,
    entry_bar: int,
    exit_bar: int | None,
    direction: float,
    size: float,
    entry_price: float,
    exit_price: float,
    pnl: float,
    commission: float,
) -> tuple[Any, ...]:
    """One trade, its times still bar positions (−1: none) for :func:`bar_times`."""
    last_bar = len(times) - 1
    return (
        entry_bar,
        exit_bar if exit_bar is not None else -1,
        "long" if direction > 0 else "short",
        float(size),
        float(entry_price),
        float(exit_price),
        float(pnl),
        float(pnl / (size * entry_price)),
        float(commission),
        (exit_bar if exit_bar is not None else last_bar) - entry_bar,
        exit_bar is None,
    )


def bar_times(times: pd.DatetimeIndex, bars: npt.NDArray[np.int64]) -> pd.DatetimeIndex:
    """The open times (UTC, ns) of bar positions ``bars``, NaT where a position is −1: one
    vectorised lookup for a whole column instead of a Timestamp per row (a year of 1m trades
    some thousand times, and boxing each time cost more than the simulation)."""
    utc = times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
    positions = np.asarray(bars, dtype=np.int64)
    return pd.DatetimeIndex(utc.as_unit("ns")[np.maximum(positions, 0)].where(positions >= 0))


def orders_frame(records: Iterable[OrderRecord], times: pd.DatetimeIndex) -> pd.DataFrame:
    """Every order a strategy placed, in placement order, with its fate (see ``ORDER_COLUMNS``)."""
    rows = [
        (
            r.created_bar,
            r.side,
            r.type,
            r.price,
            r.size,
            r.status,
            r.fill_bar if r.fill_bar is not None else -1,
            r.fill_price,
            r.commission,
        )
        for r in records
    ]
    if not rows:
        return empty_orders()
    orders = pd.DataFrame.from_records(rows, columns=list(ORDER_COLUMNS))
    orders["created_time"] = bar_times(times, orders["created_time"].to_numpy())
    orders["fill_time"] = bar_times(times, orders["fill_time"].to_numpy())
    return orders
