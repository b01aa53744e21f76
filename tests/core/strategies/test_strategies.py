"""Every built-in strategy: checked against an independent NumPy re-implementation of its
signals and of DESIGN §5, pinned by a golden trade list, and guarded against look-ahead.

Provenance of the golden numbers: each list was printed once from ``run_backtest`` after the
reference checks in this module passed for the same run (RSI recomputed with Wilder's smoothing
in NumPy, SMA with ``math.fsum``, pivots with NumPy windows, fills and sizing simulated by
:func:`simulate_long_only`; the grid's fills checked level by level), then pasted as literals.
A change to any of them is a change of behaviour and must be explained.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import backtrader as bt
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.strategies import (
    LongOnlyStrategy,
    Strategy,
    StrategyParams,
    get_strategy,
    strategy_names,
)
from tests.core.backtest.candles_fixture import make_candles

FloatArray = npt.NDArray[np.float64]
Trade = tuple[str, str | None, str, float, float, float]

N_CANDLES = 2000
GOLDEN_PARAMS: dict[str, tuple[int, dict[str, Any]]] = {
    # strategy: (candles used, params)
    "rsi": (N_CANDLES, {"period": 14, "oversold": 30, "overbought": 70}),
    "rsi_ma": (N_CANDLES, {"period": 14, "oversold": 35, "overbought": 65, "ma_period": 100}),
    "rsi_divergence": (N_CANDLES, {"period": 14, "pivot_window": 5, "max_gap": 60}),
    "grid": (300, {"levels": 3, "spacing_pct": 2.5, "order_size": 0.15}),
}


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return make_candles(N_CANDLES)


def _run(name: str, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> BacktestResult:
    return run_backtest(frame, name, params or {}, interval="1h")


# ------------------------------------------------------------------------ NumPy references
def wilder_rsi(close: FloatArray, period: int) -> FloatArray:
    """Wilder's RSI with backtrader's arithmetic: up/down moves, seeded by an ``fsum`` mean of the
    first ``period`` moves, then ``prev × (1 − 1/period) + x / period``; no losses → 100, no
    moves → 50. NaN before bar ``period``."""
    out = np.full(len(close), np.nan)
    diff = np.diff(close)
    up = np.maximum(diff, 0.0)
    down = np.maximum(-diff, 0.0)
    alpha = 1.0 / period
    keep = 1.0 - alpha
    avg_up = math.fsum(up[:period]) / period
    avg_down = math.fsum(down[:period]) / period
    for i in range(period, len(close)):
        if i > period:
            avg_up = avg_up * keep + up[i - 1] * alpha
            avg_down = avg_down * keep + down[i - 1] * alpha
        if avg_down == 0.0:
            out[i] = 50.0 if avg_up == 0.0 else 100.0
        else:
            out[i] = 100.0 - 100.0 / (1.0 + avg_up / avg_down)
    return out


def sma(values: FloatArray, period: int) -> FloatArray:
    out = np.full(len(values), np.nan)
    for i in range(period - 1, len(values)):
        out[i] = math.fsum(values[i - period + 1 : i + 1]) / period
    return out


def divergence_signals(
    frame: pd.DataFrame, period: int, w: int, max_gap: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Bullish/bearish divergence flags on the bar that *confirms* each pivot (``c + w``)."""
    low, high = frame["low"].to_numpy(), frame["high"].to_numpy()
    rsi = wilder_rsi(frame["close"].to_numpy(), period)
    n = len(frame)
    bull, bear = np.zeros(n, bool), np.zeros(n, bool)
    last_low: tuple[int, float, float] | None = None
    last_high: tuple[int, float, float] | None = None
    for t in range(max(period + w, 2 * w), n):
        c = t - w
        if int(np.argmin(low[t - 2 * w : t + 1])) == w:
            if last_low and c - last_low[0] <= max_gap:
                bull[t] = low[c] < last_low[1] and rsi[c] > last_low[2]
            last_low = (c, low[c], rsi[c])
        if int(np.argmax(high[t - 2 * w : t + 1])) == w:
            if last_high and c - last_high[0] <= max_gap:
                bear[t] = high[c] > last_high[1] and rsi[c] < last_high[2]
            last_high = (c, high[c], rsi[c])
    return bull, bear


def simulate_long_only(
    frame: pd.DataFrame,
    enter: npt.NDArray[np.bool_],
    exit_: npt.NDArray[np.bool_],
    *,
    warmup: int,
    cash: float = 10_000.0,
    commission: float = 0.001,
    stake: float = 0.95,
) -> tuple[list[Trade], FloatArray]:
    """DESIGN §5 for a long-only signal strategy, written from the spec, not from the engine:
    decide on the close of bar t, fill at the open of t+1, size = stake × equity_t / close_t,
    commission on both fills, reject when cash − cost − commission < 0."""
    times = [ts.isoformat() for ts in frame.index]
    opens, closes = frame["open"].to_numpy(), frame["close"].to_numpy()
    money, position = cash, 0.0
    entry: tuple[int, float] | None = None
    pending: tuple[str, float] | None = None
    trades: list[Trade] = []
    equity = np.empty(len(frame))
    for t in range(len(frame)):
        if pending is not None:
            side, size = pending
            price = opens[t]
            fee = size * price * commission
            if side == "buy" and money - size * price - fee >= 0.0:
                money -= size * price + fee
                position, entry = size, (t, price)
            elif side == "sell":
                assert entry is not None
                money += size * price - fee
                trades.append((times[entry[0]], times[t], "long", size, entry[1], price))
                position, entry = 0.0, None
            pending = None
        equity[t] = money + position * closes[t]
        if t >= warmup:
            if position == 0.0 and enter[t]:
                pending = ("buy", stake * equity[t] / closes[t])
            elif position > 0.0 and exit_[t]:
                pending = ("sell", position)
    if entry is not None:
        trades.append((times[entry[0]], None, "long", position, entry[1], closes[-1]))
    return trades, equity


def trade_tuples(result: BacktestResult) -> list[Trade]:
    return [
        (
            row.entry_time.isoformat(),
            None if pd.isna(row.exit_time) else row.exit_time.isoformat(),
            row.side,
            row.size,
            row.entry_price,
            row.exit_price,
        )
        for row in result.trades.itertuples(index=False)
    ]


def assert_trades_equal(actual: list[Trade], expected: list[Trade]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got[:3] == want[:3], (got, want)
        assert got[3:] == pytest.approx(want[3:], rel=1e-9, abs=1e-9), (got, want)


# ----------------------------------------------------------------- the references themselves
def test_numpy_rsi_is_backtraders_rsi(candles: pd.DataFrame) -> None:
    """The reference RSI equals ``bt.indicators.RSI(period, safediv=True)`` bar for bar,
    including the flat (→ 50) and only-rising (→ 100) cases."""
    close = candles["close"].to_numpy().copy()
    close[:40] = close[0]  # no moves at all since the start: RSI 50
    close[40:80] = close[0] * np.linspace(1.001, 1.05, 40)  # and no losses either: RSI 100
    frame = candles.assign(close=close)
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)

    class Probe(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.rsi = bt.indicators.RSI(self.data.close, period=14, safediv=True)
            self.values: list[float] = []

        def next(self) -> None:
            self.values.append(float(self.rsi[0]))

    cerebro = bt.Cerebro(stdstats=False)
    feed = frame[["open", "high", "low", "close", "volume"]].tz_localize(None)
    cerebro.adddata(bt.feeds.PandasData(dataname=feed, openinterest=None))
    cerebro.addstrategy(Probe)
    (probe,) = cerebro.run()
    expected = wilder_rsi(close, 14)
    assert np.isnan(expected[:14]).all()
    np.testing.assert_array_equal(np.array(probe.values), expected[14:])
    assert (expected[14:40] == 50.0).all()
    assert (expected[40:80] == 100.0).all()
    assert np.nanmin(expected) < 30.0 < 70.0 < np.nanmax(expected[80:])


# ------------------------------------------------------------ engine vs independent reference
def test_rsi_matches_reference(candles: pd.DataFrame) -> None:
    _, params = GOLDEN_PARAMS["rsi"]
    rsi = wilder_rsi(candles["close"].to_numpy(), params["period"])
    expected, equity = simulate_long_only(
        candles, rsi < params["oversold"], rsi > params["overbought"], warmup=params["period"]
    )
    result = _run("rsi", candles, params)
    assert len(expected) >= 5
    assert_trades_equal(trade_tuples(result), expected)
    np.testing.assert_allclose(result.equity.to_numpy(), equity, rtol=1e-12)
    # Each entry fills at the open of the bar right after RSI crossed below oversold.
    for entry in result.trades["entry_time"]:
        t = candles.index.get_loc(entry)
        assert rsi[t - 1] < params["oversold"]
        assert (
            candles["open"].iloc[t]
            == result.trades.set_index("entry_time").at[entry, "entry_price"]
        )


def test_rsi_ma_matches_reference(candles: pd.DataFrame) -> None:
    _, params = GOLDEN_PARAMS["rsi_ma"]
    close = candles["close"].to_numpy()
    rsi = wilder_rsi(close, params["period"])
    trend = sma(close, params["ma_period"])
    warmup = max(params["period"], params["ma_period"] - 1)
    with np.errstate(invalid="ignore"):
        enter = (rsi < params["oversold"]) & (close > trend)
    expected, equity = simulate_long_only(candles, enter, rsi > params["overbought"], warmup=warmup)
    result = _run("rsi_ma", candles, params)
    assert len(expected) >= 5
    assert_trades_equal(trade_tuples(result), expected)
    np.testing.assert_allclose(result.equity.to_numpy(), equity, rtol=1e-12)
    # The trend filter did filter: plain RSI would have entered on other bars.
    plain = _run("rsi", candles, {k: params[k] for k in ("period", "oversold", "overbought")})
    assert set(plain.trades["entry_time"]) != set(result.trades["entry_time"])


def test_rsi_divergence_matches_reference(candles: pd.DataFrame) -> None:
    _, params = GOLDEN_PARAMS["rsi_divergence"]
    bull, bear = divergence_signals(
        candles, params["period"], params["pivot_window"], params["max_gap"]
    )
    warmup = max(params["period"] + params["pivot_window"], 2 * params["pivot_window"])
    expected, equity = simulate_long_only(candles, bull, bear, warmup=warmup)
    result = _run("rsi_divergence", candles, params)
    assert len(expected) >= 5
    assert_trades_equal(trade_tuples(result), expected)
    np.testing.assert_allclose(result.equity.to_numpy(), equity, rtol=1e-12)


# ------------------------------------------------------------------------------ golden lists
# (entry time, exit time or None if open, side, size, entry price, exit price); equity_final
GOLDEN: dict[str, tuple[list[Trade], float]] = {
    "rsi": (
        [
            (
                "2024-01-11T03:00:00+00:00",
                "2024-01-13T19:00:00+00:00",
                "long",
                0.21792433618134802,
                43586.45508497044,
                42363.69679273846,
            ),
            (
                "2024-01-21T20:00:00+00:00",
                "2024-01-29T16:00:00+00:00",
                "long",
                0.18923952919023043,
                48807.769478342394,
                43459.722464207916,
            ),
            (
                "2024-02-04T23:00:00+00:00",
                "2024-02-11T09:00:00+00:00",
                "long",
                0.18493814486168858,
                44665.06621392544,
                48060.57179983914,
            ),
            (
                "2024-02-13T02:00:00+00:00",
                "2024-02-14T16:00:00+00:00",
                "long",
                0.18981265262853347,
                46531.03755484205,
                48536.057221205345,
            ),
            (
                "2024-02-15T11:00:00+00:00",
                "2024-02-18T04:00:00+00:00",
                "long",
                0.20464074941364646,
                44901.91309797271,
                46397.73750128281,
            ),
            (
                "2024-02-26T21:00:00+00:00",
                "2024-03-01T10:00:00+00:00",
                "long",
                0.23411099275873484,
                40352.63952858705,
                40984.36747754811,
            ),
            (
                "2024-03-03T18:00:00+00:00",
                "2024-03-04T18:00:00+00:00",
                "long",
                0.240454212351207,
                39793.553148614155,
                41410.18392575506,
            ),
            (
                "2024-03-07T12:00:00+00:00",
                "2024-03-11T22:00:00+00:00",
                "long",
                0.23757620007006366,
                41743.05455320771,
                42375.55312374724,
            ),
            (
                "2024-03-22T05:00:00+00:00",
                None,
                "long",
                0.22447725591867482,
                44759.65080722331,
                42391.08089016895,
            ),
        ],
        10032.641081828006,
    ),
    "rsi_ma": (
        [
            (
                "2024-01-15T06:00:00+00:00",
                "2024-01-16T00:00:00+00:00",
                "long",
                0.22283191212555517,
                42601.404799291246,
                45408.279744250634,
            ),
            (
                "2024-01-20T04:00:00+00:00",
                "2024-01-27T23:00:00+00:00",
                "long",
                0.18911640541072341,
                53213.459162099185,
                42867.80168838545,
            ),
            (
                "2024-02-24T09:00:00+00:00",
                "2024-03-01T09:00:00+00:00",
                "long",
                0.1659732694517678,
                49367.15234188891,
                40620.074922486834,
            ),
            (
                "2024-03-07T09:00:00+00:00",
                "2024-03-09T07:00:00+00:00",
                "long",
                0.16161966443266468,
                42107.36821303667,
                41527.3230326962,
            ),
            (
                "2024-03-18T19:00:00+00:00",
                "2024-03-20T03:00:00+00:00",
                "long",
                0.15457965927058354,
                43393.527451323906,
                46552.79935469327,
            ),
            (
                "2024-03-21T12:00:00+00:00",
                None,
                "long",
                0.15600985724573566,
                45839.721342906305,
                42391.08089016895,
            ),
        ],
        6986.447567880505,
    ),
    "rsi_divergence": (
        [
            (
                "2024-01-06T08:00:00+00:00",
                "2024-01-15T01:00:00+00:00",
                "long",
                0.22148917067635832,
                42863.02896342453,
                43843.70348719928,
            ),
            (
                "2024-01-23T17:00:00+00:00",
                "2024-02-02T01:00:00+00:00",
                "long",
                0.208630924114781,
                46459.445861461536,
                45405.971645257516,
            ),
            (
                "2024-02-03T03:00:00+00:00",
                "2024-02-08T04:00:00+00:00",
                "long",
                0.2058908609523832,
                45938.93571154379,
                46259.30299781956,
            ),
            (
                "2024-02-09T13:00:00+00:00",
                "2024-02-12T15:00:00+00:00",
                "long",
                0.20735524474767397,
                45845.887331076454,
                47217.59523196146,
            ),
            (
                "2024-02-14T12:00:00+00:00",
                "2024-02-18T21:00:00+00:00",
                "long",
                0.20547088813702397,
                47481.57956703149,
                46468.64965114801,
            ),
            (
                "2024-02-19T06:00:00+00:00",
                "2024-02-19T23:00:00+00:00",
                "long",
                0.19550930398537114,
                48838.8569227528,
                46786.79474443558,
            ),
            (
                "2024-02-21T07:00:00+00:00",
                "2024-02-24T03:00:00+00:00",
                "long",
                0.19146071625680944,
                47769.96184202991,
                51377.589102629136,
            ),
            (
                "2024-02-27T19:00:00+00:00",
                "2024-03-05T21:00:00+00:00",
                "long",
                0.23234788924424024,
                42095.14223199315,
                42771.66890010523,
            ),
            (
                "2024-03-09T01:00:00+00:00",
                "2024-03-13T22:00:00+00:00",
                "long",
                0.24346304615139527,
                40692.75349413129,
                41523.38354925524,
            ),
            (
                "2024-03-17T06:00:00+00:00",
                "2024-03-18T17:00:00+00:00",
                "long",
                0.233440404756143,
                43179.53825564665,
                44185.914665513505,
            ),
        ],
        10829.790246310073,
    ),
    "grid": (
        [
            (
                "2024-01-01T01:00:00+00:00",
                "2024-01-01T15:00:00+00:00",
                "long",
                0.037482856314800854,
                40013.77600573511,
                41018.75233539466,
            ),
            (
                "2024-01-01T01:00:00+00:00",
                "2024-01-02T07:00:00+00:00",
                "long",
                0.037482856314800854,
                40013.77600573511,
                42019.20970942868,
            ),
            (
                "2024-01-01T01:00:00+00:00",
                "2024-01-03T00:00:00+00:00",
                "long",
                0.03748285631480084,
                40013.77600573511,
                43019.66708346269,
            ),
            (
                "2024-01-03T02:00:00+00:00",
                "2024-01-03T18:00:00+00:00",
                "long",
                0.035281621612853496,
                43426.832595392625,
                43434.583748786936,
            ),
            (
                "2024-01-03T02:00:00+00:00",
                "2024-01-03T19:00:00+00:00",
                "long",
                0.035281621612853496,
                43426.832595392625,
                44520.44834250661,
            ),
            (
                "2024-01-03T02:00:00+00:00",
                "2024-01-04T11:00:00+00:00",
                "long",
                0.035281621612853496,
                43426.832595392625,
                43434.583748786936,
            ),
            (
                "2024-01-03T12:00:00+00:00",
                "2024-01-04T16:00:00+00:00",
                "long",
                0.035281621612853496,
                42348.71915506726,
                44520.44834250661,
            ),
            (
                "2024-01-03T21:00:00+00:00",
                "2024-01-05T02:00:00+00:00",
                "long",
                0.035281621612853496,
                43434.583748786936,
                44520.44834250661,
            ),
            (
                "2024-01-04T08:00:00+00:00",
                "2024-01-05T07:00:00+00:00",
                "long",
                0.035281621612853496,
                42348.71915506726,
                45606.312936226284,
            ),
            (
                "2024-01-04T23:00:00+00:00",
                "2024-01-06T03:00:00+00:00",
                "long",
                0.035281621612853496,
                43434.583748786936,
                42348.71915506726,
            ),
            (
                "2024-01-05T10:00:00+00:00",
                "2024-01-06T04:00:00+00:00",
                "long",
                0.035281621612853496,
                44520.44834250661,
                43434.583748786936,
            ),
            (
                "2024-01-05T12:00:00+00:00",
                "2024-01-06T18:00:00+00:00",
                "long",
                0.035281621612853496,
                43434.583748786936,
                43434.583748786936,
            ),
            (
                "2024-01-05T19:00:00+00:00",
                "2024-01-06T20:00:00+00:00",
                "long",
                0.035281621612853496,
                42348.71915506726,
                44520.44834250661,
            ),
            (
                "2024-01-06T01:00:00+00:00",
                "2024-01-07T05:00:00+00:00",
                "long",
                0.035281621612853496,
                41262.85456134759,
                45606.312936226284,
            ),
            (
                "2024-01-06T05:00:00+00:00",
                "2024-01-07T15:00:00+00:00",
                "long",
                0.035281621612853496,
                42348.71915506726,
                45606.312936226284,
            ),
            (
                "2024-01-07T14:00:00+00:00",
                "2024-01-07T17:00:00+00:00",
                "long",
                0.035281621612853496,
                44520.44834250661,
                46692.177529945955,
            ),
            (
                "2024-01-07T20:00:00+00:00",
                "2024-01-08T01:00:00+00:00",
                "long",
                0.035281621612853496,
                45606.312936226284,
                45606.312936226284,
            ),
            (
                "2024-01-08T00:00:00+00:00",
                "2024-01-08T04:00:00+00:00",
                "long",
                0.035281621612853496,
                44520.44834250661,
                46692.177529945955,
            ),
            (
                "2024-01-08T06:00:00+00:00",
                "2024-01-08T23:00:00+00:00",
                "long",
                0.03451539333003896,
                47215.39212101943,
                46016.923865750425,
            ),
            (
                "2024-01-08T06:00:00+00:00",
                "2024-01-11T03:00:00+00:00",
                "long",
                0.06903078666007793,
                47215.39212101943,
                43586.45508497044,
            ),
            (
                "2024-01-08T17:00:00+00:00",
                "2024-01-11T03:00:00+00:00",
                "long",
                0.03086720662237212,
                46016.923865750425,
                43586.45508497044,
            ),
            (
                "2024-01-08T17:00:00+00:00",
                None,
                "long",
                0.0036481867076668395,
                46016.923865750425,
                41000.87635994824,
            ),
            (
                "2024-01-08T19:00:00+00:00",
                None,
                "long",
                0.03451539333003896,
                44837.00274098759,
                41000.87635994824,
            ),
            (
                "2024-01-09T18:00:00+00:00",
                None,
                "long",
                0.03451539333003896,
                44837.00274098759,
                41000.87635994824,
            ),
            (
                "2024-01-11T02:00:00+00:00",
                None,
                "long",
                0.03451539333003896,
                43657.081616224765,
                41000.87635994824,
            ),
            (
                "2024-01-11T13:00:00+00:00",
                None,
                "long",
                0.03573145556592789,
                42503.28422380561,
                41000.87635994824,
            ),
            (
                "2024-01-11T21:00:00+00:00",
                None,
                "long",
                0.03573145556592789,
                41413.45642319521,
                41000.87635994824,
            ),
        ],
        10029.986253883306,
    ),
}


@pytest.mark.parametrize("name", list(GOLDEN_PARAMS))
def test_golden_trades(name: str) -> None:
    n, params = GOLDEN_PARAMS[name]
    result = _run(name, make_candles(N_CANDLES).iloc[:n], params)
    trades, equity_final = GOLDEN[name]
    assert_trades_equal(trade_tuples(result), trades)
    assert result.equity_final == pytest.approx(equity_final, rel=1e-9)
    assert result.rejected_orders == 0
    closed = result.trades[~result.trades["is_open"]]
    assert result.metrics["trade_count"] == len(closed)
    assert result.metrics["total_return"] == pytest.approx(equity_final / 10_000.0 - 1, rel=1e-9)


# ---------------------------------------------------------------------------------- warm-up
@pytest.mark.parametrize("name", ["rsi", "rsi_ma", "rsi_divergence"])
def test_warmup_is_when_every_indicator_is_defined(name: str, candles: pd.DataFrame) -> None:
    """``warmup`` is never earlier than backtrader's own minimum period, and for plain
    indicator strategies exactly equal to it: no trade can start before indicators exist."""
    spec = get_strategy(name)
    params = spec.parse_params(GOLDEN_PARAMS[name][1])
    first_next: list[int] = []

    class Probe(spec.bt_strategy(params)):  # type: ignore[misc]
        def nextstart(self) -> None:
            first_next.append(self.bar)
            super().nextstart()

    cerebro = bt.Cerebro(stdstats=False)
    feed = candles[["open", "high", "low", "close", "volume"]].tz_localize(None)
    cerebro.adddata(bt.feeds.PandasData(dataname=feed, openinterest=None))
    cerebro.addstrategy(Probe)
    cerebro.run()
    if name == "rsi_divergence":
        assert spec.warmup(params) >= first_next[0]
    else:
        assert spec.warmup(params) == first_next[0]


@pytest.mark.parametrize("name", sorted(GOLDEN_PARAMS))
def test_no_order_during_warmup(name: str, candles: pd.DataFrame) -> None:
    spec = get_strategy(name)
    params = spec.parse_params(GOLDEN_PARAMS[name][1])
    result = _run(name, candles, GOLDEN_PARAMS[name][1])
    assert len(result.orders) > 0
    first_order_bar = candles.index.get_loc(result.orders["created_time"].min())
    assert first_order_bar >= spec.warmup(params)
    first_entry_bar = candles.index.get_loc(result.trades["entry_time"].min())
    assert first_entry_bar >= spec.warmup(params) + 1


# ------------------------------------------------------------------------- look-ahead guard
def assert_no_lookahead(
    strategy: str | Strategy, params: dict[str, Any], frame: pd.DataFrame, cuts: list[int]
) -> None:
    """Run on the first ``n`` candles for each ``n`` in ``cuts`` and compare with the full run:
    the equity of those bars, every order placed on them (what a signal produced) and every
    trade closed within them must be identical. A strategy that reads a later bar cannot pass
    when a cut falls right after one of its signals."""
    full = run_backtest(frame, strategy, params, interval="1h")
    for n in cuts:
        part = run_backtest(frame.iloc[:n], strategy, params, interval="1h")
        cut = frame.index[n]
        pd.testing.assert_series_equal(part.equity, full.equity.iloc[:n], rtol=0, atol=0)
        placed = ["created_time", "side", "type", "price", "size"]
        before = full.orders[full.orders["created_time"] < cut].reset_index(drop=True)
        assert len(part.orders) == len(before), f"cut at {n}: signals differ"
        pd.testing.assert_frame_equal(part.orders[placed], before[placed], rtol=0, atol=0)
        settled = part.orders["status"] != "open"
        pd.testing.assert_frame_equal(part.orders[settled], before[settled], rtol=0, atol=0)
        closed_part = part.trades[~part.trades["is_open"]].reset_index(drop=True)
        closed_full = full.trades[full.trades["exit_time"] < cut].reset_index(drop=True)
        pd.testing.assert_frame_equal(closed_part, closed_full, rtol=0, atol=0)


def _cuts_after_signals(result: BacktestResult, frame: pd.DataFrame, limit: int = 6) -> list[int]:
    """Cut right after the bars on which orders were placed (the truncated data ends with the
    signal bar), spread over the run."""
    bars = sorted({int(frame.index.get_loc(t)) + 1 for t in result.orders["created_time"]})
    bars = [b for b in bars if b < len(frame)]
    picks = np.linspace(0, len(bars) - 1, min(limit, len(bars))).round().astype(int)
    return sorted({bars[i] for i in picks})


@pytest.mark.parametrize("name", sorted(GOLDEN_PARAMS))
def test_no_lookahead(name: str) -> None:
    n, params = GOLDEN_PARAMS[name]
    frame = make_candles(N_CANDLES).iloc[: max(n, 600)]
    full = _run(name, frame, params)
    cuts = _cuts_after_signals(full, frame)
    assert len(cuts) >= 3
    assert_no_lookahead(name, params, frame, [*cuts, len(frame) // 2 + 1])


class PeekingBt(LongOnlyStrategy):
    """Deliberately biased: buys when the *next* close will be higher, sells when lower."""

    def _next_return(self) -> float:
        try:
            return float(self.data.close[1] / self.data.close[0] - 1.0)
        except IndexError:  # the last candle has no future to peek at
            return 0.0

    def should_enter_long(self) -> bool:
        return self._next_return() > 0.002

    def should_exit_long(self) -> bool:
        return self._next_return() < -0.002


class Peeking(Strategy):
    name: ClassVar[str] = "peeking"
    params_model: ClassVar[type[StrategyParams]] = StrategyParams
    bt_class = PeekingBt


def test_lookahead_guard_catches_a_peeking_strategy() -> None:
    frame = make_candles(N_CANDLES).iloc[:600]
    full = run_backtest(frame, Peeking(), {}, interval="1h")
    assert full.metrics["win_rate"] is not None and full.metrics["win_rate"] > 0.6  # it cheats
    cuts = _cuts_after_signals(full, frame)
    with pytest.raises(AssertionError, match="signals differ"):
        assert_no_lookahead(Peeking(), {}, frame, cuts)


# ---------------------------------------------------------------------------------- grid bot
def _grid_batches(result: BacktestResult) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
    """The orders placed at each (re-)centring: the bars with a full ladder of limit orders."""
    levels = int(result.params["levels"])
    limits = result.orders[result.orders["type"] == "limit"]
    batches = [(t, g) for t, g in limits.groupby("created_time") if len(g) == 2 * levels]
    assert batches
    return batches


def test_grid_buy_side_places_buy_orders(candles: pd.DataFrame) -> None:
    """Regression: the old service placed a SELL on the buy side. Every limit below the
    reference (the centring close) must be a buy, at reference × (1 − k × spacing)."""
    _, params = GOLDEN_PARAMS["grid"]
    result = _run("grid", candles, params)
    step = params["spacing_pct"] / 100
    for created, batch in _grid_batches(result):
        reference = candles.at[created, "close"]
        below = batch[batch["price"] < reference]
        assert set(below["side"]) == {"buy"}
        expected = [reference * (1 - k * step) for k in range(1, params["levels"] + 1)]
        assert sorted(below["price"], reverse=True) == pytest.approx(expected, rel=1e-12)


def test_grid_sell_side_places_sell_orders(candles: pd.DataFrame) -> None:
    """Every limit above the reference must be a sell, at reference × (1 + k × spacing)."""
    _, params = GOLDEN_PARAMS["grid"]
    result = _run("grid", candles, params)
    step = params["spacing_pct"] / 100
    for created, batch in _grid_batches(result):
        reference = candles.at[created, "close"]
        above = batch[batch["price"] > reference]
        assert set(above["side"]) == {"sell"}
        expected = [reference * (1 + k * step) for k in range(1, params["levels"] + 1)]
        assert sorted(above["price"]) == pytest.approx(expected, rel=1e-12)


def test_grid_fills_at_its_levels_and_never_goes_short(candles: pd.DataFrame) -> None:
    """A limit fills at the open when the open is already through its level, else exactly at the
    level inside the bar's range; inventory never drops below zero (spot)."""
    _, params = GOLDEN_PARAMS["grid"]
    result = _run("grid", candles, params)
    orders = result.orders
    filled = orders[(orders["type"] == "limit") & (orders["status"] == "filled")]
    assert len(filled) > 20
    for order in filled.itertuples(index=False):
        bar = candles.loc[order.fill_time]
        if order.side == "buy":
            want = bar["open"] if bar["open"] <= order.price else order.price
            assert bar["low"] <= order.price
        else:
            want = bar["open"] if bar["open"] >= order.price else order.price
            assert bar["high"] >= order.price
        assert order.fill_price == want
        assert order.fill_time > order.created_time
    held = np.cumsum(
        np.where(result.orders["side"] == "buy", 1.0, -1.0)
        * result.orders["size"].where(result.orders["status"] == "filled", 0.0)
    )
    assert held.min() >= -1e-9
    # A re-centring happened in both directions, each time rebalancing with a market order.
    market = result.orders[result.orders["type"] == "market"]
    assert {"buy", "sell"} <= set(market["side"])


def test_every_built_in_strategy_is_covered_here() -> None:
    built_in = {
        name
        for name in strategy_names()
        if type(get_strategy(name)).__module__.startswith("cryptota_core.strategies.")
    }
    assert built_in == set(GOLDEN_PARAMS)
