"""The fast engine: DESIGN §5 in numba kernels, bar for bar what the backtrader engine does.

:func:`run_fast_backtest` is the pandas-facing wrapper: it validates input like
:func:`~cryptota_core.backtest.engine.run_backtest`, computes the strategy's signals, runs the
simulation kernel (:mod:`cryptota_core.kernels`) and builds the same
:class:`BacktestResult` (trades through the shared
:func:`~cryptota_core.backtest.engine.trades_from_fills`, metrics through
:func:`~cryptota_core.metrics.compute_metrics`).

Parity with backtrader is exact, not approximate: every kernel does each floating-point
operation in backtrader's order (see :mod:`~cryptota_core.kernels.indicators` for RSI
and SMA, :mod:`~cryptota_core.kernels.broker` for fills, cash and valuation,
:mod:`~cryptota_core.kernels.grid` for the grid's order book). The tests check trades,
orders, equity and metrics for equality on random candles and parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cryptota_core.backtest.inputs import (
    check_length,
    check_settings,
    prepare_candles,
    resolve_strategy,
)
from cryptota_core.backtest.records import (
    measured_result,
    orders_frame,
    trades_from_fills,
)
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.broker import DEFAULT_BROKER, BrokerSettings
from cryptota_core.errors import InvalidInputError
from cryptota_core.kernels.broker import (
    STATUS_FILLED,
    STATUS_NAMES,
    STATUS_OPEN,
    STATUS_REJECTED,
    Prices,
)
from cryptota_core.kernels.indicators import rsi_nb, sma_nb
from cryptota_core.market.intervals import parse_interval
from cryptota_core.strategies import Strategy, StrategyParams, get_strategy, strategy_names
from cryptota_core.strategies.base import Fill, OrderRecord

__all__ = [
    "ENGINE",
    "STATUS_FILLED",
    "STATUS_OPEN",
    "STATUS_REJECTED",
    "SUPPORTED",
    "prices_of",
    "rsi_nb",
    "run_fast_backtest",
    "sma_nb",
    "supports",
]

log = logging.getLogger(__name__)

ENGINE = "fast"
SUPPORTED: tuple[str, ...] = ("rsi", "rsi_ma", "rsi_divergence", "grid")
"""The built-in strategies the fast engine runs (all of them: each declares a kernel). Any other
strategy runs here when its spec declares one (:attr:`Strategy.kernel`); without one it runs on
backtrader only: the fast engine cannot know its rules."""


def supports(spec: Strategy) -> bool:
    """Whether ``spec``'s class declares a kernel (a subclass does not inherit one: see
    :meth:`Strategy.fast_kernel`)."""
    return spec.fast_kernel() is not None


def prices_of(frame: pd.DataFrame) -> Prices:
    """The OHLC columns of validated candles as the kernels take them (contiguous float64)."""
    return Prices(
        *(
            np.ascontiguousarray(frame[c].to_numpy(dtype="float64"))
            for c in ("open", "high", "low", "close")
        )
    )


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
    whose spec declares one: the same trades, equity, orders and metrics, many times faster."""
    interval = parse_interval(interval)
    spec = resolve_strategy(strategy)
    kernel = spec.fast_kernel()
    if kernel is None:
        raise InvalidInputError(
            f"the fast engine supports {', '.join(_kernel_backed())}; "
            f"use --engine backtrader for {spec.name}"
        )
    model = spec.parse_params(params)
    check_settings(cash=cash, commission=commission, slippage=slippage, stake=stake)
    frame = prepare_candles(candles)
    warmup = check_length(spec, model, frame)
    prices = prices_of(frame)
    broker = BrokerSettings(cash=cash, commission=commission, slippage=slippage, stake=stake)
    run = kernel.simulate(model, prices, warmup, broker)
    index = pd.DatetimeIndex(frame.index)
    closes = prices.close
    equity = pd.Series(run.equity, index=index, name="equity", dtype="float64")
    benchmark = pd.Series(cash * closes / closes[0], index=index, name="benchmark")
    fills = [
        Fill(bar=bar, size=size, price=price, commission=commission)
        for bar, size, price, commission in zip(
            run.fills["bar"].tolist(),
            run.fills["size"].tolist(),
            run.fills["price"].tolist(),
            run.fills["commission"].tolist(),
            strict=True,
        )
    ]
    return measured_result(
        spec,
        model,
        engine=ENGINE,
        interval=interval,
        equity=equity,
        trades=trades_from_fills(fills, index, closes[-1]),
        benchmark=benchmark,
        exposure_bars=int(np.count_nonzero(run.position)),
        rejected_orders=int(run.rejected),
        orders=orders_frame(_order_records(run.orders), index),
        broker=(cash, commission, slippage, stake),
    )


def _kernel_backed() -> list[str]:
    """The registered strategies the fast engine can run, for the refusal's message: the
    built-ins, then any other that declares a kernel."""
    others = [n for n in strategy_names() if n not in SUPPORTED and supports(get_strategy(n))]
    return [*SUPPORTED, *others]


def _order_records(orders: np.ndarray) -> list[OrderRecord]:
    """The kernels' order rows (:data:`~cryptota_core.kernels.broker.ORDER_DT`) as
    the engines' order records. Read column by column (``tolist``): a field of a structured
    row read one at a time costs a NumPy scalar each, which a grid's thousands of orders feel."""
    columns = zip(
        orders["bar"].tolist(),
        orders["side"].tolist(),
        orders["limit"].tolist(),
        orders["price"].tolist(),
        orders["size"].tolist(),
        orders["status"].tolist(),
        orders["fill_bar"].tolist(),
        orders["fill_price"].tolist(),
        orders["commission"].tolist(),
        strict=True,
    )
    return [
        OrderRecord(
            created_bar=bar,
            side="buy" if side > 0 else "sell",
            type="limit" if limit else "market",
            price=price,
            size=size,
            status=STATUS_NAMES[status],
            fill_bar=fill_bar if fill_bar >= 0 else None,
            fill_price=fill_price,
            commission=commission,
        )
        for bar, side, limit, price, size, status, fill_bar, fill_price, commission in columns
    ]
