"""The fast engine: DESIGN §5 in numba kernels, bar for bar what the backtrader engine does.

The kernels (``*_nb``) take and return only NumPy arrays; :func:`run_fast_backtest` is the
pandas-facing wrapper that validates input, computes the strategy's signals, calls the
simulation kernel and builds the same :class:`BacktestResult` as
:func:`~cryptota_core.backtest.engine.run_backtest` (trades through the shared
:func:`~cryptota_core.backtest.engine.trades_from_fills`, metrics through
:func:`~cryptota_core.metrics.compute_metrics`).

Parity with backtrader is exact, not approximate, because each floating-point operation is done
in backtrader's order:

* **RSI** (``bt.indicators.RSI(period, safediv=True)``): up/down moves ``max(±(c[i] − c[i−1]),
  0)``; each smoothed by backtrader's SMMA, i.e. ``ExponentialSmoothing(alpha=1/period)`` seeded
  on bar ``period`` with ``math.fsum`` of the first ``period`` moves ÷ ``period``, then
  ``prev × (1 − alpha) + x × alpha``; ``rs = up / down`` with ``0/0 → 1`` (RSI 50) and
  ``x/0 → inf`` (RSI 100); ``rsi = 100 − 100 / (1 + rs)``.
* **SMA** is backtrader's ``Average``: ``math.fsum(window) / period``, a correctly rounded sum,
  kept here as a rolling exact (Shewchuk) expansion and rounded as CPython's ``fsum`` rounds it.
* **Broker** (``BackBroker._execute`` with a stock-like percent commission, leverage 1): a buy
  fills at ``open × (1 + slippage)`` capped at the high, and is rejected when
  ``cash − size × price − |size| × commission × price < 0``; a sell fills at ``open × (1 −
  slippage)`` floored at the low, and credits ``size × entry + size × (price − entry)`` minus its
  commission; the value at each close is ``cash + ((size × close − upnl) + upnl)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
import pandas as pd

from cryptota_core.backtest.engine import (
    _check_settings,
    _prepare_candles,
    _resolve_strategy,
    measured_result,
    orders_frame,
    trades_from_fills,
)
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.intervals import parse_interval
from cryptota_core.strategies import Strategy, StrategyParams
from cryptota_core.strategies.base import Fill, OrderRecord
from cryptota_core.strategies.rsi import RsiParams
from cryptota_core.strategies.rsi_ma import RsiMaParams

log = logging.getLogger(__name__)

ENGINE = "fast"
SUPPORTED: tuple[str, ...] = ("rsi", "rsi_ma")

# Order status codes of the simulation kernel.
STATUS_OPEN = 0
STATUS_FILLED = 1
STATUS_REJECTED = 2
_STATUS_NAMES = {STATUS_OPEN: "open", STATUS_FILLED: "filled", STATUS_REJECTED: "rejected"}

_PARTIALS = 128  # capacity of a rolling exact-sum expansion (prices need a handful)


# ==================================================================================== kernels
@numba.njit(cache=True)
def _grow_nb(partials: np.ndarray, n: int, x: float) -> int:
    """Add ``x`` to the non-overlapping expansion ``partials[:n]`` exactly (CPython's
    ``math.fsum`` inner loop); return the new length, or -1 when the capacity is exceeded."""
    i = 0
    for j in range(n):
        y = partials[j]
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        yr = hi - x
        lo = y - yr
        if lo != 0.0:
            partials[i] = lo
            i += 1
        x = hi
    if x != 0.0:
        if i >= partials.shape[0]:
            return -1
        partials[i] = x
        i += 1
    return i


@numba.njit(cache=True)
def _round_partials_nb(partials: np.ndarray, n: int) -> float:
    """The expansion ``partials[:n]`` correctly rounded to a float, as CPython's ``fsum``."""
    hi = 0.0
    lo = 0.0
    if n > 0:
        n -= 1
        hi = partials[n]
        while n > 0:
            x = hi
            n -= 1
            y = partials[n]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if n > 0 and ((lo < 0.0 and partials[n - 1] < 0.0) or (lo > 0.0 and partials[n - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    return hi


@numba.njit(cache=True)
def fsum_nb(values: np.ndarray) -> float:
    """``math.fsum(values)``, bit for bit (finite values)."""
    partials = np.empty(max(_PARTIALS, values.shape[0] + 1), dtype=np.float64)
    n = 0
    for k in range(values.shape[0]):
        n = _grow_nb(partials, n, values[k])
    return _round_partials_nb(partials, n)


@numba.njit(cache=True)
def sma_nb(close: np.ndarray, period: int) -> np.ndarray:
    """backtrader's ``SMA(period)``: ``math.fsum`` of the last ``period`` values ÷ ``period``,
    NaN for the first ``period − 1`` bars. The exact window sum rolls forward (add the new value,
    subtract the old one, both exactly), so each bar costs O(1) instead of O(period)."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    if period < 1 or n < period:
        return out
    partials = np.empty(_PARTIALS, dtype=np.float64)
    m = 0
    for i in range(n):
        m = _grow_nb(partials, m, close[i])
        if m >= 0 and i >= period:
            m = _grow_nb(partials, m, -close[i - period])
        if m < 0:  # expansion overflowed: rebuild it from the window
            m = 0
            for k in range(max(0, i - period + 1), i + 1):
                m = _grow_nb(partials, m, close[k])
        if i >= period - 1:
            out[i] = _round_partials_nb(partials, m) / period
    return out


@numba.njit(cache=True)
def rsi_nb(close: np.ndarray, period: int) -> np.ndarray:
    """backtrader's ``RSI(period, safediv=True)``, bit for bit; NaN before bar ``period``."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    if period < 1 or n <= period:
        return out
    up = np.zeros(n)
    down = np.zeros(n)
    for i in range(1, n):
        up[i] = max(close[i] - close[i - 1], 0.0)
        down[i] = max(close[i - 1] - close[i], 0.0)
    alpha = 1.0 / period
    alpha1 = 1.0 - alpha
    ma_up = fsum_nb(up[1 : period + 1]) / period
    ma_down = fsum_nb(down[1 : period + 1]) / period
    for i in range(period, n):
        if i > period:
            ma_up = ma_up * alpha1 + up[i] * alpha
            ma_down = ma_down * alpha1 + down[i] * alpha
        # DivZeroByZero: 0/0 -> rs 1 (RSI 50), x/0 -> rs inf (RSI 100)
        no_loss = 1.0 if ma_up == 0.0 else np.inf
        rs = ma_up / ma_down if ma_down != 0.0 else no_loss
        out[i] = 100.0 - 100.0 / (1.0 + rs)
    return out


@numba.njit(cache=True)
def simulate_long_nb(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    entry_signal: np.ndarray,
    exit_signal: np.ndarray,
    warmup: int,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
) -> tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
]:
    """DESIGN §5 long-only market-order simulation, as backtrader's ``BackBroker`` computes it.

    Signals are read on bar ``t`` (from ``warmup`` on) and fill at the open of ``t + 1``. Returns
    ``(equity, position, order_bar, order_side, order_size, order_status, fill_bar, fill_price,
    fill_commission)``: the value and position size at every close, then one row per order
    (side +1 buy / −1 sell; status 0 open, 1 filled, 2 rejected; fill fields −1/NaN unless
    filled)."""
    n = close.shape[0]
    equity = np.empty(n)
    position = np.empty(n)
    order_bar = np.empty(n, dtype=np.int64)
    order_side = np.empty(n, dtype=np.int64)
    order_size = np.empty(n)
    order_status = np.empty(n, dtype=np.int64)
    fill_bar = np.empty(n, dtype=np.int64)
    fill_price = np.empty(n)
    fill_comm = np.empty(n)
    orders = 0
    pending = -1  # index of the order waiting for the next open
    size = 0.0  # position size
    price = 0.0  # position (entry) price
    for t in range(n):
        if pending >= 0:
            k = pending
            pending = -1
            if order_side[k] > 0:
                p = open_[t]
                if slippage:
                    pslip = p * (1 + slippage)
                    p = pslip if pslip <= high[t] else high[t]
                qty = order_size[k]
                new_cash = cash - abs(qty) * p / 1.0
                comm = abs(qty) * commission * p
                new_cash -= comm
                if new_cash < 0.0:
                    order_status[k] = STATUS_REJECTED
                else:
                    cash = new_cash
                    size = qty
                    price = p
                    order_status[k] = STATUS_FILLED
                    fill_bar[k] = t
                    fill_price[k] = p
                    fill_comm[k] = 0.0 + comm
            else:
                p = open_[t]
                if slippage:
                    pslip = p * (1 - slippage)
                    p = pslip if pslip >= low[t] else low[t]
                closed = -size
                closed_value = abs(closed) * price
                pnl = -closed * (p - price) * 1.0
                cash += closed_value / 1.0 + pnl
                comm = abs(closed) * commission * p
                cash -= comm
                cash += 0.0
                size = 0.0
                price = 0.0
                order_status[k] = STATUS_FILLED
                fill_bar[k] = t
                fill_price[k] = p
                fill_comm[k] = comm + 0.0
        if size > 0.0:
            dvalue = size * close[t]
            unrealized = size * (close[t] - price) * 1.0
            value_unlever = 0.0 + (dvalue - unrealized) / 1.0
            value_unlever += unrealized
        else:
            value_unlever = 0.0
        value = cash + value_unlever
        equity[t] = value
        position[t] = size
        if t < warmup:
            continue
        if size == 0.0:
            if entry_signal[t]:
                qty = stake * value / close[t]
                if qty:
                    order_bar[orders] = t
                    order_side[orders] = 1
                    order_size[orders] = qty
                    order_status[orders] = STATUS_OPEN
                    fill_bar[orders] = -1
                    fill_price[orders] = np.nan
                    fill_comm[orders] = np.nan
                    pending = orders
                    orders += 1
        elif size > 0.0 and exit_signal[t]:
            order_bar[orders] = t
            order_side[orders] = -1
            order_size[orders] = abs(size)
            order_status[orders] = STATUS_OPEN
            fill_bar[orders] = -1
            fill_price[orders] = np.nan
            fill_comm[orders] = np.nan
            pending = orders
            orders += 1
    return (
        equity,
        position,
        order_bar[:orders],
        order_side[:orders],
        order_size[:orders],
        order_status[:orders],
        fill_bar[:orders],
        fill_price[:orders],
        fill_comm[:orders],
    )


# ============================================================================ pandas wrapper
def run_fast_backtest(
    candles: pd.DataFrame,
    strategy: str | Strategy | type[Strategy],
    params: Mapping[str, Any] | str | StrategyParams | None = None,
    *,
    interval: str,
    cash: float = 10_000.0,
    commission: float = 0.001,
    slippage: float = 0.0,
    stake: float = 0.95,
) -> BacktestResult:
    """:func:`~cryptota_core.backtest.engine.run_backtest` on numba kernels, for the strategies
    in :data:`SUPPORTED`: the same trades, equity, orders and metrics, many times faster."""
    interval = parse_interval(interval)
    spec = _resolve_strategy(strategy)
    if spec.name not in SUPPORTED:
        raise InvalidInputError(
            f"the fast engine supports {', '.join(SUPPORTED)}; "
            f"use --engine backtrader for {spec.name}"
        )
    model = spec.parse_params(params)
    _check_settings(cash=cash, commission=commission, slippage=slippage, stake=stake)
    frame = _prepare_candles(candles)
    warmup = spec.warmup(model)
    if len(frame) < warmup + 2:
        log.warning(
            "%s: %d candles cannot trade (warm-up %d, then a signal bar and a fill bar)",
            spec.slug(model),
            len(frame),
            warmup,
        )

    open_, high, low, closes = (
        np.ascontiguousarray(frame[c].to_numpy(dtype="float64"))
        for c in ("open", "high", "low", "close")
    )
    entry, exit_ = _signals(spec.name, model, closes)
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
        closes,
        entry,
        exit_,
        int(warmup),
        float(cash),
        float(commission),
        float(slippage),
        float(stake),
    )

    index = pd.DatetimeIndex(frame.index)
    equity = pd.Series(equity_values, index=index, name="equity", dtype="float64")
    benchmark = pd.Series(cash * closes / closes[0], index=index, name="benchmark")
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
    trades = trades_from_fills(fills, index, closes[-1])
    records = [
        OrderRecord(
            created_bar=int(order_bar[k]),
            side="buy" if order_side[k] > 0 else "sell",
            type="market",
            price=math.nan,
            size=float(order_size[k]),
            status=_STATUS_NAMES[int(order_status[k])],
            fill_bar=int(fill_bar[k]) if order_status[k] == STATUS_FILLED else None,
            fill_price=float(fill_price[k]),
            commission=float(fill_comm[k]),
        )
        for k in range(len(order_bar))
    ]
    return measured_result(
        spec,
        model,
        engine=ENGINE,
        interval=interval,
        equity=equity,
        trades=trades,
        benchmark=benchmark,
        exposure_bars=int(np.count_nonzero(positions)),
        rejected_orders=int(np.count_nonzero(order_status == STATUS_REJECTED)),
        orders=orders_frame(records, index),
        broker=(cash, commission, slippage, stake),
    )


def _signals(name: str, model: StrategyParams, close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit signals of a supported strategy on every bar (False where undefined)."""
    assert isinstance(model, RsiParams)  # both supported strategies extend RsiParams
    rsi = rsi_nb(close, int(model.period))
    with np.errstate(invalid="ignore"):
        entry = rsi < float(model.oversold)
        exit_ = rsi > float(model.overbought)
        if name == "rsi_ma":
            assert isinstance(model, RsiMaParams)
            entry &= close > sma_nb(close, int(model.ma_period))
    return entry, exit_
