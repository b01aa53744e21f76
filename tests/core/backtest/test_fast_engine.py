"""The fast engine against its oracle, the backtrader engine: the same fills, trades, equity,
orders and metrics — equal, not close — on seeded data for all four built-in strategies, and
the same RSI/SMA values as backtrader's indicators."""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.fast import SUPPORTED, rsi_nb, run_fast_backtest, sma_nb
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.sources.synthetic import generate_candles
from cryptota_core.strategies import strategy_names
from cryptota_core.strategies.rsi import Rsi
from tests.core.backtest.candles_fixture import make_candles
from tests.core.backtest.parity import assert_same_result

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
    ("rsi_divergence", {}, {}),
    ("rsi_divergence", {"period": 7, "pivot_window": 2, "max_gap": 30}, {"stake": 1.0}),
    ("rsi_divergence", {"period": 3, "pivot_window": 1, "max_gap": 2}, {"slippage": 0.002}),
    ("grid", {}, {}),
    ("grid", {"levels": 3, "spacing_pct": 0.5, "order_size": 0.1}, {"slippage": 0.002}),
    ("grid", {"levels": 1, "spacing_pct": 4.0, "order_size": 0.5}, {"commission": 0.0}),
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


@pytest.mark.parametrize(("dataset", "case"), ALL_PAIRS)
def test_fast_engine_matches_backtrader(dataset: str, case: int) -> None:
    oracle, fast = _pair(dataset, case)
    assert_same_result(oracle, fast)


def test_the_matrix_covers_the_hard_cases() -> None:
    """The parity matrix is only worth something if it exercises every rule of DESIGN §5."""
    pairs = [_pair(d, c) for d, c in ALL_PAIRS]
    oracles = [o for o, _ in pairs]
    assert any(o.rejected_orders > 0 for o in oracles), "a gap-up rejection at stake 1.0"
    assert any(o.trades["is_open"].any() for o in oracles), "a position open at the end"
    assert any(o.slippage > 0 and len(o.trades) > 0 for o in oracles), "slippage on fills"
    assert any(o.commission == 0 and len(o.trades) > 0 for o in oracles), "zero commission"
    for name in SUPPORTED:
        assert any(o.strategy == name and len(o.trades) > 3 for o in oracles), name
    grid_orders = pd.concat([o.orders for o in oracles if o.strategy == "grid"])
    statuses = set(grid_orders["status"])
    assert {"filled", "cancelled", "open"} <= statuses, statuses
    assert set(grid_orders["type"]) == {"market", "limit"}
    capped = False  # a slipped buy capped at the bar's high
    for dataset, case in ALL_PAIRS:
        oracle = _pair(dataset, case)[0]
        if oracle.slippage > 0 and len(oracle.trades) and oracle.strategy != "grid":
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
    np.testing.assert_array_equal(got[first:], expected[first:])


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
def test_every_built_in_strategy_runs_on_the_fast_engine() -> None:
    assert set(SUPPORTED) == set(strategy_names()) & {"rsi", "rsi_ma", "rsi_divergence", "grid"}
    assert set(SUPPORTED) == {"rsi", "rsi_ma", "rsi_divergence", "grid"}


class _UserRsi(Rsi):
    """A user strategy that reuses RSI's parameters: the fast engine cannot know its rules."""

    name: ClassVar[str] = "user_rsi"


def test_user_strategy_names_the_backtrader_engine() -> None:
    message = "the fast engine supports rsi, rsi_ma, rsi_divergence, grid; use --engine " + (
        "backtrader for user_rsi"
    )
    with pytest.raises(InvalidInputError, match=message):
        run_fast_backtest(make_candles(200), _UserRsi(), None, interval="1h")


def test_bad_settings_are_rejected_like_the_backtrader_engine() -> None:
    with pytest.raises(InvalidInputError, match="--stake"):
        run_fast_backtest(make_candles(200), "rsi", None, interval="1h", stake=0.0)


def test_fast_engine_runs_half_a_million_candles() -> None:
    frame = make_candles(500_000, seed=5, interval="1m")
    result = run_fast_backtest(frame, "rsi_ma", {"ma_period": 500}, interval="1m")
    assert result.bars == 500_000 and len(result.equity) == 500_000
    assert np.isfinite(result.equity.to_numpy()).all()
    assert len(result.trades) > 0


@pytest.mark.parametrize("engine", [run_backtest, run_fast_backtest])
def test_a_series_shorter_than_the_warm_up_is_one_clear_error(engine: Any) -> None:
    """Backtrader itself raises IndexError on a series no longer than the RSI period; both
    engines refuse it first, with one line."""
    frame = make_candles(40).iloc[:14]
    with pytest.raises(InvalidInputError, match="14 candles are too few for rsi-p14-os30-ob70"):
        engine(frame, "rsi", {"period": 14}, interval="1h")
    assert engine(make_candles(40).iloc[:15], "rsi", {"period": 14}, interval="1h").bars == 15
