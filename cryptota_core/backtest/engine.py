"""The backtrader engine: one strategy configuration over one candle series (DESIGN §5).

How each rule of §5 maps onto backtrader:

* **Signal on bar t, fill at the open of t+1.** Strategies decide in ``next()`` after bar *t*
  closed and place plain market orders; backtrader's broker fills them with the next bar's open.
  Cheat-on-close and cheat-on-open stay off.
* **Slippage** ``set_slippage_perc(slippage, slip_open=True, slip_limit=True, slip_match=True,
  slip_out=False)``: ``slip_open`` is what makes it apply to open fills (market orders); buys fill
  at ``open × (1 + slippage)``, sells at ``open × (1 − slippage)``, capped at the bar's high/low
  (backtrader's ``slip_match``); limit orders are capped at their limit price.
* **Commission** ``setcommission(commission=...)``: percent-of-value, stock-like, so each fill
  pays ``|size| × price × commission``.
* **Sizing**: ``stake × broker value at the close of t ÷ close of t``, computed by the strategy
  base (:meth:`~cryptota_core.strategies.base.BaseBtStrategy.entry_size`); sizes are fractional.
* **Rejection at fill**: ``checksubmit`` is off, so backtrader does not pre-check orders at
  submission against the signal bar's close; the one check is the broker's at execution, which
  rejects (status ``Margin``) an order whose cost plus commission exceeds the cash at the fill
  price. Each rejection is counted in ``rejected_orders``.
* **Equity** is ``broker.getvalue()`` recorded in every bar's ``prenext``/``next``: the value at
  that bar's close, one per candle, starting with the cash.
* **Trades** are rebuilt from the fills, matching exits against entries first-in first-out, so a
  trade row is one round trip of one lot (for single-position strategies: one entry, one exit).
  Commissions are split pro rata by size. A position still open at the end becomes an open trade
  marked at the last close (no exit commission), exactly as the broker values it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from cryptota_core.backtest.inputs import (
    PRICE_COLUMNS,
    check_length,
    check_settings,
    prepare_candles,
    resolve_strategy,
)
from cryptota_core.backtest.records import measured_result, orders_frame, trades_from_fills
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.broker import DEFAULT_BROKER
from cryptota_core.market.intervals import parse_interval
from cryptota_core.strategies import Strategy, StrategyParams
from cryptota_core.strategies.bt.base import BaseBtStrategy

log = logging.getLogger(__name__)

ENGINE = "backtrader"


def run_backtest(
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
    """Run ``strategy`` with ``params`` over ``candles`` on backtrader and measure it.

    ``candles`` is a candle frame (``open_time`` UTC index, at least open/high/low/close); the
    frame is sorted if needed, and duplicate or missing prices are rejected
    (:func:`~cryptota_core.backtest.inputs.prepare_candles`). The broker settings must be in
    :class:`~cryptota_core.broker.BrokerSettings`'s ranges (``stake`` at most 1: the
    account has no leverage; an entry that costs more than the cash at the fill is rejected, as
    a real broker would). The benchmark is buy-and-hold: all the cash buys the asset at the
    first candle's close, without commission, and is held; its value is ``cash × close /
    close[0]`` at every close.
    """
    interval = parse_interval(interval)
    spec = resolve_strategy(strategy)
    model = spec.parse_params(params)
    check_settings(cash=cash, commission=commission, slippage=slippage, stake=stake)
    frame = prepare_candles(candles)
    check_length(spec, model, frame)

    strat = _run_cerebro(
        frame,
        spec.bt_strategy(model),
        cash=cash,
        commission=commission,
        slippage=slippage,
        stake=stake,
    )

    index = pd.DatetimeIndex(frame.index)
    closes = frame["close"].to_numpy(dtype="float64")
    equity = pd.Series(strat.equity_values, index=index, name="equity", dtype="float64")
    if len(equity) != len(frame):  # backtrader skipped a bar: never silently misalign
        raise RuntimeError(f"backtrader produced {len(equity)} equity values for {len(frame)} bars")
    benchmark = pd.Series(cash * closes / closes[0], index=index, name="benchmark")
    trades = trades_from_fills(strat.fills, index, closes[-1])
    return measured_result(
        spec,
        model,
        engine=ENGINE,
        interval=interval,
        equity=equity,
        trades=trades,
        benchmark=benchmark,
        exposure_bars=int(np.count_nonzero(np.asarray(strat.position_sizes) != 0.0)),
        rejected_orders=int(strat.rejected_orders),
        orders=orders_frame(strat.orders_log.values(), index),
        broker=(cash, commission, slippage, stake),
    )


def _run_cerebro(
    frame: pd.DataFrame,
    bt_strategy: type[BaseBtStrategy],
    *,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
) -> BaseBtStrategy:
    """Configure backtrader's broker for DESIGN §5 and run one strategy; return its instance."""
    cerebro = bt.Cerebro(stdstats=False, preload=True, runonce=True, quicknotify=False)
    cerebro.broker.setcash(cash)
    cerebro.broker.setcommission(commission=commission)
    cerebro.broker.set_checksubmit(False)
    cerebro.broker.set_slippage_perc(
        slippage, slip_open=True, slip_limit=True, slip_match=True, slip_out=False
    )
    feed = frame.loc[:, [*PRICE_COLUMNS, "volume"]].copy()
    feed.index = pd.DatetimeIndex(feed.index).tz_convert("UTC").tz_localize(None)
    cerebro.adddata(bt.feeds.PandasData(dataname=feed, openinterest=None))
    cerebro.addstrategy(bt_strategy, stake=stake)
    (strat,) = cerebro.run(maxcpus=1)
    return strat
