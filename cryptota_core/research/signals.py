"""The latest signal of a parameter set, as paper orders (the old service's "live trades").

A backtest of the set over the recent candles ends with the orders the strategy placed after the
last candle closed: they would fill at the next open, which has not happened yet, so the engine
reports them as still ``open``. Those orders are the live signal — computed by the very engine
and rules of every backtest (DESIGN §5), so a paper order is exactly what the backtest would have
done next. No signal on the last candle means no order.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cryptota_core.backtest.fast import run_fast_backtest
from cryptota_core.backtest.result import iso_utc
from cryptota_core.broker import DEFAULT_BROKER
from cryptota_core.strategies import get_strategy


@dataclass(frozen=True)
class PaperOrder:
    """A simulated order from the latest signal of a strategy's current best parameters."""

    exchange: str
    symbol: str
    interval: str
    strategy: str
    slug: str
    params: dict[str, Any]
    engine: str
    signal_time: pd.Timestamp
    """Open time of the candle whose close produced the signal."""
    side: str
    order_type: str
    price: float | None
    size: float | None
    window_start: pd.Timestamp
    window_end: pd.Timestamp

    @property
    def order_key(self) -> str:
        """Identity of the order: the same signal of the same set on the same candle."""
        identity = [
            self.exchange,
            self.symbol,
            self.interval,
            self.slug,
            iso_utc(self.signal_time),
            self.side,
        ]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]


def latest_orders(
    candles: pd.DataFrame,
    *,
    exchange: str,
    symbol: str,
    interval: str,
    strategy: str,
    params: Mapping[str, Any],
    cash: float = DEFAULT_BROKER.cash,
    commission: float = DEFAULT_BROKER.commission,
    slippage: float = DEFAULT_BROKER.slippage,
    stake: float = DEFAULT_BROKER.stake,
) -> list[PaperOrder]:
    """The orders ``strategy`` with ``params`` placed after the last candle of ``candles``
    closed (empty when it placed none)."""
    spec = get_strategy(strategy)
    model = spec.parse_params(dict(params))
    run = run_fast_backtest(
        candles,
        spec,
        model,
        interval=interval,
        cash=cash,
        commission=commission,
        slippage=slippage,
        stake=stake,
    )
    index = pd.DatetimeIndex(candles.index)
    last = index[-1]
    orders = run.orders
    pending = orders[(orders["status"] == "open") & (orders["created_time"] == last)]
    return [
        PaperOrder(
            exchange=exchange,
            symbol=symbol,
            interval=interval,
            strategy=spec.name,
            slug=spec.slug(model),
            params=model.model_dump(mode="json"),
            engine=run.engine,
            signal_time=last,
            side=str(row["side"]),
            order_type=str(row["type"]),
            price=_price(float(row["price"]), float(candles["close"].iloc[-1])),
            size=float(row["size"]),
            window_start=index[0],
            window_end=run.end,
        )
        for row in pending.to_dict(orient="records")
    ]


def _price(limit: float, last_close: float) -> float:
    """A limit order's price; for a market order the last close, the reference it was sized at."""
    return last_close if math.isnan(limit) else float(limit)
