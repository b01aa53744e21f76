"""The fast engine against its oracle, the backtrader engine: same fills, trades, equity, orders
and metrics on seeded data, and the same RSI/SMA values as backtrader's indicators."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.fast import rsi_nb, run_fast_backtest, sma_nb
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.backtest.trades import TRADE_COLUMNS
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.sources.synthetic import generate_candles
from tests.core.backtest.candles_fixture import make_candles

REL = 1e-9

DATASETS = ("fixture-1", "fixture-2", "synthetic-btc", "synthetic-eth")

# (strategy, params, broker settings)
CASES: list[tuple[str, dict[str, Any], dict[str, float]]] = [
    ("rsi", {}, {}),
    ("rsi", {"period": 7, "oversold": 25, "overbought": 65}, {"slippage": 0.001}),
    ("rsi", {"period": 21, "oversold": 35, "overbought": 60}, {"commission": 0.0}),
    ("rsi", {"period": 5, "oversold": 30, "overbought": 75}, {"stake": 1.0}),
    ("rsi", {"period": 9, "oversold": 40, "overbought": 95}, {"slippage": 0.002, "stake": 1.0}),
    ("rsi_ma", {}, {}),
    ("rsi_ma", {"period": 7, "oversold": 35, "overbought": 70, "ma_period": 20}, {"stake": 1.0}),
    (
        "rsi_ma",
        {"period": 10, "oversold": 40, "overbought": 65, "ma_period": 100},
        {"slippage": 0.0005, "commission": 0.0},
    ),
    ("rsi_ma", {"period": 14, "oversold": 45, "overbought": 90, "ma_period": 2}, {}),
]


@cache
def _frame(name: str) -> pd.DataFrame:
    if name == "fixture-1":
        return make_candles(3000, seed=1)
    if name == "fixture-2":
        return make_candles(2500, seed=20240101)
    symbol = "BTCUSDT" if name == "synthetic-btc" else "ETHUSDT"
    frame = generate_candles(
        symbol, "1h", "2023-01-01", "2023-05-01", seed=7, now="2025-01-01"
    ).copy()
    assert len(frame) > 2000
    return frame


@cache
def _pair(dataset: str, case: int) -> tuple[BacktestResult, BacktestResult]:
    strategy, params, settings = CASES[case]
    frame = _frame(dataset)
    oracle = run_backtest(frame, strategy, params, interval="1h", **settings)
    fast = run_fast_backtest(frame, strategy, params, interval="1h", **settings)
    return oracle, fast


ALL_PAIRS = [(d, c) for d in DATASETS for c in range(len(CASES))]


def _assert_close(a: np.ndarray, b: np.ndarray, what: str) -> None:
    np.testing.assert_allclose(b, a, rtol=REL, atol=0.0, err_msg=what)


@pytest.mark.parametrize(("dataset", "case"), ALL_PAIRS)
def test_fast_engine_matches_backtrader(dataset: str, case: int) -> None:
    oracle, fast = _pair(dataset, case)
    assert fast.engine == "fast" and oracle.engine == "backtrader"
    assert (fast.strategy, fast.slug, fast.params) == (oracle.strategy, oracle.slug, oracle.params)
    assert (fast.bars, fast.start, fast.end) == (oracle.bars, oracle.start, oracle.end)
    assert fast.rejected_orders == oracle.rejected_orders

    assert fast.equity.index.equals(oracle.equity.index)
    _assert_close(oracle.equity.to_numpy(), fast.equity.to_numpy(), "equity")
    pd.testing.assert_series_equal(fast.benchmark, oracle.benchmark, check_exact=True)

    ta, tb = oracle.trades, fast.trades
    assert list(tb.columns) == list(TRADE_COLUMNS)
    assert len(tb) == len(ta)
    assert tb.dtypes.equals(ta.dtypes)
    for col in ("entry_time", "exit_time", "side", "bars", "is_open"):
        pd.testing.assert_series_equal(tb[col], ta[col], check_exact=True)
    for col in ("size", "entry_price", "exit_price", "pnl", "pnl_pct", "commission"):
        _assert_close(ta[col].to_numpy(), tb[col].to_numpy(), col)

    oa, ob = oracle.orders, fast.orders
    assert len(ob) == len(oa)
    for col in ("created_time", "side", "type", "status", "fill_time"):
        pd.testing.assert_series_equal(ob[col], oa[col], check_exact=True)
    for col in ("price", "size", "fill_price", "commission"):
        _assert_close(oa[col].to_numpy(), ob[col].to_numpy(), f"orders.{col}")

    assert fast.metrics.keys() == oracle.metrics.keys()
    for key, expected in oracle.metrics.items():
        got = fast.metrics[key]
        if expected is None or (isinstance(expected, float) and math.isnan(expected)):
            assert got is None or math.isnan(got), key
        else:
            assert got is not None and got == pytest.approx(expected, rel=REL, abs=0.0), key


def test_the_matrix_covers_the_hard_cases() -> None:
    """The parity matrix is only worth something if it exercises every rule of DESIGN §5."""
    pairs = [_pair(d, c) for d, c in ALL_PAIRS]
    oracles = [o for o, _ in pairs]
    assert any(o.rejected_orders > 0 for o in oracles), "a gap-up rejection at stake 1.0"
    assert any(o.trades["is_open"].any() for o in oracles), "a position open at the end"
    assert any(o.slippage > 0 and len(o.trades) > 0 for o in oracles), "slippage on fills"
    assert any(o.commission == 0 and len(o.trades) > 0 for o in oracles), "zero commission"
    assert any(o.strategy == "rsi_ma" and len(o.trades) > 3 for o in oracles), "rsi_ma trades"
    assert sum(len(o.trades) for o in oracles) > 300
    capped = False  # a slipped buy capped at the bar's high
    for dataset, case in ALL_PAIRS:
        oracle = _pair(dataset, case)[0]
        if oracle.slippage > 0 and len(oracle.trades):
            highs = _frame(dataset)["high"].to_numpy()
            bars = oracle.equity.index.get_indexer(oracle.trades["entry_time"])
            capped |= bool((oracle.trades["entry_price"].to_numpy() == highs[bars]).any())
    assert capped, "a slipped fill capped at the high"


# ------------------------------------------------------------------------------- indicators
class _Indicators(bt.Strategy):
    params = (("period", 14), ("ma_period", 20))

    def __init__(self) -> None:
        self.rsi = bt.indicators.RSI(self.data.close, period=self.p.period, safediv=True)
        self.sma = bt.indicators.SMA(self.data.close, period=self.p.ma_period)


def _backtrader_indicators(close: np.ndarray, period: int, ma_period: int) -> tuple[Any, Any]:
    n = len(close)
    index = pd.date_range("2024-01-01", periods=n, freq="h")
    feed = pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index
    )
    cerebro = bt.Cerebro(stdstats=False, preload=True, runonce=True)
    cerebro.adddata(bt.feeds.PandasData(dataname=feed, openinterest=None))
    cerebro.addstrategy(_Indicators, period=period, ma_period=ma_period)
    (strat,) = cerebro.run(maxcpus=1)
    return np.asarray(strat.rsi.array[:n]), np.asarray(strat.sma.array[:n])


def _assert_indicator(expected: np.ndarray, got: np.ndarray, first: int) -> None:
    assert np.isnan(got[:first]).all()
    np.testing.assert_allclose(got[first:], expected[first:], rtol=1e-12, atol=0.0)


@pytest.mark.parametrize(("period", "ma_period"), [(2, 2), (7, 20), (14, 50), (30, 200)])
def test_rsi_and_sma_kernels_equal_backtrader(period: int, ma_period: int) -> None:
    close = make_candles(1500, seed=period)["close"].to_numpy()
    rsi, sma = _backtrader_indicators(close, period, ma_period)
    _assert_indicator(rsi, rsi_nb(close, period), period)
    _assert_indicator(sma, sma_nb(close, ma_period), ma_period - 1)


def test_rsi_without_losses_is_100_and_without_moves_is_50() -> None:
    rising = 100.0 + np.arange(40, dtype="float64")
    flat = np.full(40, 100.0)
    # flat, then only rises, then a loss: 50 → 100 → below 100
    mixed = np.concatenate([flat[:20], 100.0 + np.arange(1, 11), [110.0, 110.0, 109.0]])
    for close in (rising, flat, mixed):
        expected, _ = _backtrader_indicators(close, 14, 5)
        got = rsi_nb(close, 14)
        _assert_indicator(expected, got, 14)
    assert (rsi_nb(rising, 14)[14:] == 100.0).all()
    assert (rsi_nb(flat, 14)[14:] == 50.0).all()
    assert rsi_nb(mixed, 14)[14] == 50.0 and rsi_nb(mixed, 14)[-2] == 100.0
    assert rsi_nb(mixed, 14)[-1] < 100.0


def test_indicators_are_nan_when_the_series_is_too_short() -> None:
    close = np.array([1.0, 2.0, 3.0])
    assert np.isnan(rsi_nb(close, 3)).all()
    assert np.isnan(sma_nb(close, 4)).all()


# ----------------------------------------------------------------------------------- wrapper
def test_unsupported_strategy_names_the_backtrader_engine() -> None:
    message = "the fast engine supports rsi, rsi_ma; use --engine backtrader for grid"
    with pytest.raises(InvalidInputError, match=message):
        run_fast_backtest(make_candles(200), "grid", None, interval="1h")


def test_bad_settings_are_rejected_like_the_backtrader_engine() -> None:
    with pytest.raises(InvalidInputError, match="--stake"):
        run_fast_backtest(make_candles(200), "rsi", None, interval="1h", stake=0.0)


def test_fast_engine_runs_half_a_million_candles() -> None:
    frame = make_candles(500_000, seed=5, interval="1m")
    result = run_fast_backtest(frame, "rsi_ma", {"ma_period": 500}, interval="1m")
    assert result.bars == 500_000 and len(result.equity) == 500_000
    assert np.isfinite(result.equity.to_numpy()).all()
    assert len(result.trades) > 0
