"""The fast engine: DESIGN §5 in numba kernels, bar for bar what the backtrader engine does.

:func:`run_fast_backtest` is the pandas-facing wrapper: it validates input like
:func:`~cryptota_core.backtest.engine.run_backtest`, computes the strategy's signals, runs the
simulation kernel (:mod:`cryptota_core.backtest.kernels`) and builds the same
:class:`BacktestResult` (trades through the shared
:func:`~cryptota_core.backtest.engine.trades_from_fills`, metrics through
:func:`~cryptota_core.metrics.compute_metrics`).

Parity with backtrader is exact, not approximate: every kernel does each floating-point
operation in backtrader's order (see :mod:`~cryptota_core.backtest.kernels.indicators` for RSI
and SMA, :mod:`~cryptota_core.backtest.kernels.broker` for fills, cash and valuation,
:mod:`~cryptota_core.backtest.kernels.grid` for the grid's order book). The tests check trades,
orders, equity and metrics for equality on random candles and parameters.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cryptota_core.backtest.engine import (
    measured_result,
    orders_frame,
    trades_from_fills,
)
from cryptota_core.backtest.inputs import (
    check_length,
    check_settings,
    prepare_candles,
    resolve_strategy,
)
from cryptota_core.backtest.kernels.broker import (
    STATUS_FILLED,
    STATUS_NAMES,
    STATUS_OPEN,
    STATUS_REJECTED,
    simulate_long_nb,
)
from cryptota_core.backtest.kernels.grid import (
    F_BAR,
    F_COMMISSION,
    F_PRICE,
    F_SIZE,
    O_BAR,
    O_COMMISSION,
    O_FILL_BAR,
    O_FILL_PRICE,
    O_LIMIT,
    O_PRICE,
    O_SIDE,
    O_SIZE,
    O_STATUS,
    simulate_grid_nb,
)
from cryptota_core.backtest.kernels.indicators import rsi_nb, sma_nb
from cryptota_core.backtest.kernels.signals import divergence_signals_nb, level_signals_nb
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.broker import DEFAULT_BROKER
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.intervals import parse_interval
from cryptota_core.strategies import Strategy, StrategyParams
from cryptota_core.strategies.base import Fill, OrderRecord
from cryptota_core.strategies.grid import Grid, GridParams
from cryptota_core.strategies.rsi import Rsi, RsiParams
from cryptota_core.strategies.rsi_divergence import RsiDivergence, RsiDivergenceParams
from cryptota_core.strategies.rsi_ma import RsiMa, RsiMaParams

__all__ = [
    "ENGINE",
    "STATUS_FILLED",
    "STATUS_OPEN",
    "STATUS_REJECTED",
    "SUPPORTED",
    "rsi_nb",
    "run_fast_backtest",
    "signals",
    "sma_nb",
    "supports",
]

log = logging.getLogger(__name__)

ENGINE = "fast"
SUPPORTED: tuple[str, ...] = ("rsi", "rsi_ma", "rsi_divergence", "grid")
"""The built-in strategies the fast engine runs (all of them). A user strategy runs on
backtrader only: the fast engine cannot know its rules."""

_BUILT_IN: dict[str, type[Strategy]] = {
    "rsi": Rsi,
    "rsi_ma": RsiMa,
    "rsi_divergence": RsiDivergence,
    "grid": Grid,
}


def supports(spec: Strategy) -> bool:
    """Whether ``spec`` is one of the built-in strategies (not merely one named like it)."""
    built_in = _BUILT_IN.get(spec.name)
    return built_in is not None and type(spec) is built_in


def run_fast_backtest(
    candles: pd.DataFrame,
    strategy: str | Strategy | type[Strategy],
    params: Mapping[str, Any] | str | StrategyParams | None = None,
    *,
    interval: str,
    cash: float = DEFAULT_BROKER.cash,
    commission: float = DEFAULT_BROKER.commission,
    slippage: float = DEFAULT_BROKER.slippage,
    stake: float = DEFAULT_BROKER.stake,
) -> BacktestResult:
    """:func:`~cryptota_core.backtest.engine.run_backtest` on numba kernels, for the strategies
    in :data:`SUPPORTED`: the same trades, equity, orders and metrics, many times faster."""
    interval = parse_interval(interval)
    spec = resolve_strategy(strategy)
    if not supports(spec):
        raise InvalidInputError(
            f"the fast engine supports {', '.join(SUPPORTED)}; "
            f"use --engine backtrader for {spec.name}"
        )
    model = spec.parse_params(params)
    check_settings(cash=cash, commission=commission, slippage=slippage, stake=stake)
    frame = prepare_candles(candles)
    warmup = check_length(spec, model, frame)
    open_, high, low, closes = (
        np.ascontiguousarray(frame[c].to_numpy(dtype="float64"))
        for c in ("open", "high", "low", "close")
    )
    index = pd.DatetimeIndex(frame.index)
    if isinstance(model, GridParams):
        equity_values, positions, records, fills, rejected = _run_grid(
            model, open_, high, low, closes, cash=cash, commission=commission, slippage=slippage
        )
    else:
        entry, exit_ = signals(model, high, low, closes)
        equity_values, positions, records, fills, rejected = _run_long(
            entry,
            exit_,
            open_,
            high,
            low,
            closes,
            warmup=warmup,
            cash=cash,
            commission=commission,
            slippage=slippage,
            stake=stake,
        )
    equity = pd.Series(equity_values, index=index, name="equity", dtype="float64")
    benchmark = pd.Series(cash * closes / closes[0], index=index, name="benchmark")
    return measured_result(
        spec,
        model,
        engine=ENGINE,
        interval=interval,
        equity=equity,
        trades=trades_from_fills(fills, index, closes[-1]),
        benchmark=benchmark,
        exposure_bars=int(np.count_nonzero(positions)),
        rejected_orders=rejected,
        orders=orders_frame(records, index),
        broker=(cash, commission, slippage, stake),
    )


def signals(
    model: StrategyParams, high: np.ndarray, low: np.ndarray, close: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit signals of a long-only built-in strategy on every bar (False where
    undefined; the simulation also ignores the warm-up bars). Decisions read the closed bar
    only, so the open is not an input."""
    if isinstance(model, RsiDivergenceParams):
        rsi = rsi_nb(close, int(model.period))
        warmup = RsiDivergence().warmup(model)
        return divergence_signals_nb(
            low, high, rsi, int(model.pivot_window), int(model.max_gap), int(warmup)
        )
    if isinstance(model, RsiParams):  # rsi, and rsi_ma which extends it
        rsi = rsi_nb(close, int(model.period))
        use_trend = isinstance(model, RsiMaParams)
        trend = sma_nb(close, int(model.ma_period)) if isinstance(model, RsiMaParams) else close
        return level_signals_nb(
            rsi, float(model.oversold), float(model.overbought), close, trend, use_trend
        )
    raise InvalidInputError(f"no fast signals for parameters {type(model).__name__}")


def _run_long(
    entry: np.ndarray,
    exit_: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    *,
    warmup: int,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
) -> tuple[np.ndarray, np.ndarray, list[OrderRecord], list[Fill], int]:
    """The long-only market-order simulation, as (equity, positions, orders, fills,
    rejections)."""
    (
        equity_values,
        positions,
        order_bar,
        order_side,
        order_size,
        order_status,
        fill_bar,
        fill_price,
        fill_comm,
    ) = simulate_long_nb(
        open_,
        high,
        low,
        close,
        entry,
        exit_,
        int(warmup),
        float(cash),
        float(commission),
        float(slippage),
        float(stake),
    )
    filled = np.flatnonzero(order_status == STATUS_FILLED)
    fills = [
        Fill(
            bar=int(fill_bar[k]),
            size=float(order_size[k] if order_side[k] > 0 else -order_size[k]),
            price=float(fill_price[k]),
            commission=float(fill_comm[k]),
        )
        for k in filled
    ]
    records = [
        OrderRecord(
            created_bar=int(order_bar[k]),
            side="buy" if order_side[k] > 0 else "sell",
            type="market",
            price=math.nan,
            size=float(order_size[k]),
            status=STATUS_NAMES[int(order_status[k])],
            fill_bar=int(fill_bar[k]) if order_status[k] == STATUS_FILLED else None,
            fill_price=float(fill_price[k]),
            commission=float(fill_comm[k]),
        )
        for k in range(len(order_bar))
    ]
    rejected = int(np.count_nonzero(order_status == STATUS_REJECTED))
    return equity_values, positions, records, fills, rejected


def _run_grid(
    model: GridParams,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    *,
    cash: float,
    commission: float,
    slippage: float,
) -> tuple[np.ndarray, np.ndarray, list[OrderRecord], list[Fill], int]:
    """The grid bot's order-book simulation, as (equity, positions, orders, fills,
    rejections). ``stake`` does not apply: the grid sizes its orders with ``order_size``."""
    equity_values, positions, orders, fill_rows, rejected = simulate_grid_nb(
        open_,
        high,
        low,
        close,
        int(model.levels),
        float(model.spacing_pct),
        float(model.order_size),
        float(cash),
        float(commission),
        float(slippage),
    )
    fills = [
        Fill(
            bar=int(row[F_BAR]),
            size=float(row[F_SIZE]),
            price=float(row[F_PRICE]),
            commission=float(row[F_COMMISSION]),
        )
        for row in fill_rows
    ]
    records = []
    for row in orders:
        status = int(row[O_STATUS])
        executed = row[O_FILL_BAR] >= 0
        records.append(
            OrderRecord(
                created_bar=int(row[O_BAR]),
                side="buy" if row[O_SIDE] > 0 else "sell",
                type="limit" if row[O_LIMIT] else "market",
                price=float(row[O_PRICE]),
                size=float(row[O_SIZE]),
                status=STATUS_NAMES[status],
                fill_bar=int(row[O_FILL_BAR]) if executed else None,
                fill_price=float(row[O_FILL_PRICE]),
                commission=float(row[O_COMMISSION]),
            )
        )
    return equity_values, positions, records, fills, int(rejected)
