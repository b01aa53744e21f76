"""Backtest throughput (bars/s) for each strategy on backtrader, against a bare backtrader RSI.

The peer is the hand-written backtrader script a researcher would write for the same rsi rule
(`bt.indicators.RSI`, market orders, percent commission): it measures what our engine's
recording (equity per bar, fills, orders, trade reconstruction, 45 metrics) costs.
"""

from __future__ import annotations

from functools import partial

import backtrader as bt
import pandas as pd

from bench.common import Row, timed
from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.fast import SUPPORTED, run_fast_backtest
from cryptota_core.market.sources.synthetic import generate_candles
from cryptota_core.strategies import get_strategy, strategy_names

DATASETS = {
    "1 year of 1h": (
        "1h",
        pd.Timestamp("2023-01-01", tz="UTC"),
        pd.Timestamp("2024-01-01", tz="UTC"),
    ),
    "1 month of 1m": (
        "1m",
        pd.Timestamp("2023-01-01", tz="UTC"),
        pd.Timestamp("2023-02-01", tz="UTC"),
    ),
}


class _BareRsi(bt.Strategy):
    params = (("period", 14), ("oversold", 30.0), ("overbought", 70.0))

    def __init__(self) -> None:
        self.rsi = bt.indicators.RSI(self.data.close, period=self.p.period, safediv=True)

    def next(self) -> None:
        if not self.position and self.rsi[0] < self.p.oversold:
            self.buy(size=0.95 * self.broker.getvalue() / self.data.close[0])
        elif self.position and self.rsi[0] > self.p.overbought:
            self.close()


def _bare_backtrader(frame: pd.DataFrame) -> None:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame.tz_convert(None)))
    cerebro.addstrategy(_BareRsi)
    cerebro.broker.setcash(10_000.0)
    cerebro.broker.setcommission(commission=0.001)
    cerebro.run()


def run() -> list[Row]:
    rows: list[Row] = []
    for label, (interval, start, end) in DATASETS.items():
        frame = generate_candles("BTCUSDT", interval, start, end, seed=42)
        group = f"backtest: {label}"
        for name in strategy_names():
            spec = get_strategy(name)
            params = spec.parse_params(None)
            seconds, _ = timed(
                partial(run_backtest, frame, spec, params, interval=interval), repeat=2
            )
            rows.append(
                Row(group, name, f"cryptota {spec.slug(params)}", len(frame), seconds, unit="bars")
            )
        for name in SUPPORTED:
            spec = get_strategy(name)
            params = spec.parse_params(None)
            run_fast_backtest(frame.iloc[:500], spec, params, interval=interval)  # compile once
            seconds, _ = timed(
                partial(run_fast_backtest, frame, spec, params, interval=interval), repeat=3
            )
            rows.append(
                Row(group, name, f"cryptota fast {spec.slug(params)}", len(frame), seconds,
                    unit="bars")
            )  # fmt: skip
        seconds, _ = timed(partial(_bare_backtrader, frame), repeat=2)
        rows.append(Row(group, "rsi", "bare backtrader script", len(frame), seconds, unit="bars"))
    return rows
