"""DESIGN §5 on the backtrader engine, rule by rule, with a scripted strategy whose signals are
given as bar numbers, so each expected number can be computed by hand from the candles."""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from cryptota_core.backtest.engine import run_backtest, trades_from_fills
from cryptota_core.backtest.result import ORDER_COLUMNS, BacktestResult
from cryptota_core.errors import InvalidInputError
from cryptota_core.strategies import (
    Fill,
    LongShortStrategy,
    Strategy,
    StrategyParams,
    get_strategy,
    strategy_names,
)
from cryptota_core.trades import TRADE_COLUMNS
from tests.core.backtest.candles_fixture import make_candles

CASH = 10_000.0


class ScriptParams(StrategyParams):
    """Bars (0-based) on whose close each signal fires; ``warmup`` as the spec reports it."""

    enter_long: tuple[int, ...] = ()
    exit_long: tuple[int, ...] = ()
    enter_short: tuple[int, ...] = ()
    exit_short: tuple[int, ...] = ()
    warmup: int = 0


class ScriptBt(LongShortStrategy):
    def __init__(self) -> None:
        super().__init__()
        self.cfg: ScriptParams = self.p.spec_params

    def should_enter_long(self) -> bool:
        return self.bar in self.cfg.enter_long

    def should_exit_long(self) -> bool:
        return self.bar in self.cfg.exit_long

    def should_enter_short(self) -> bool:
        return self.bar in self.cfg.enter_short

    def should_exit_short(self) -> bool:
        return self.bar in self.cfg.exit_short


class Script(Strategy):
    name: ClassVar[str] = "script"
    params_model: ClassVar[type[StrategyParams]] = ScriptParams
    bt_class = ScriptBt

    def warmup(self, params: StrategyParams) -> int:
        assert isinstance(params, ScriptParams)
        return params.warmup


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return make_candles(300)


def run(frame: pd.DataFrame, **kwargs: Any) -> BacktestResult:
    settings = {
        k: kwargs.pop(k) for k in ("cash", "commission", "slippage", "stake") if k in kwargs
    }
    return run_backtest(frame, Script(), kwargs, interval="1h", **settings)


def bar(frame: pd.DataFrame, i: int) -> pd.Series:
    return frame.iloc[i]


# ------------------------------------------------------------------------------- fills
def test_market_orders_fill_at_the_next_open(candles: pd.DataFrame) -> None:
    result = run(candles, enter_long=(10,), exit_long=(20,))
    (trade,) = result.trades.itertuples(index=False)
    assert trade.entry_time == candles.index[11]
    assert trade.entry_price == bar(candles, 11)["open"]
    assert trade.exit_time == candles.index[21]
    assert trade.exit_price == bar(candles, 21)["open"]
    assert trade.bars == 10
    assert trade.side == "long"
    assert not trade.is_open
    assert bar(candles, 11)["open"] != bar(candles, 10)["close"]  # the data can tell them apart


@pytest.mark.parametrize("rate", [0.001, 0.0025, 0.0])
def test_commission_is_size_times_price_times_rate_on_every_fill(
    candles: pd.DataFrame, rate: float
) -> None:
    result = run(candles, enter_long=(10, 40), exit_long=(20, 50), commission=rate)
    fills = result.orders[result.orders["status"] == "filled"]
    assert len(fills) == 4
    np.testing.assert_allclose(
        fills["commission"], fills["size"] * fills["fill_price"] * rate, rtol=1e-12, atol=0
    )
    for trade in result.trades.itertuples(index=False):
        entry_fee = trade.size * trade.entry_price * rate
        exit_fee = trade.size * trade.exit_price * rate
        assert trade.commission == pytest.approx(entry_fee + exit_fee, rel=1e-12)
        expected_pnl = trade.size * (trade.exit_price - trade.entry_price) - entry_fee - exit_fee
        assert trade.pnl == pytest.approx(expected_pnl, rel=1e-12)
        assert trade.pnl_pct == pytest.approx(trade.pnl / (trade.size * trade.entry_price))
    assert result.equity_final == pytest.approx(CASH + result.trades["pnl"].sum(), rel=1e-12)


@pytest.mark.parametrize("stake", [0.95, 0.5, 0.1])
def test_entry_size_is_stake_times_equity_over_the_signal_close(
    candles: pd.DataFrame, stake: float
) -> None:
    result = run(candles, enter_long=(10, 40), exit_long=(20,), stake=stake)
    first, second = result.trades.itertuples(index=False)
    assert first.size == pytest.approx(stake * CASH / bar(candles, 10)["close"], rel=1e-12)
    equity_40 = result.equity.iloc[40]
    assert equity_40 != CASH  # the first trade changed the equity the second one is sized on
    assert second.size == pytest.approx(stake * equity_40 / bar(candles, 40)["close"], rel=1e-12)


def test_fractional_sizes_are_kept(candles: pd.DataFrame) -> None:
    result = run(candles, enter_long=(10,), cash=123.0)
    size = result.trades["size"].iloc[0]
    assert 0 < size < 0.01
    assert size == pytest.approx(0.95 * 123.0 / bar(candles, 10)["close"], rel=1e-12)


# ---------------------------------------------------------------------------- slippage
def test_slippage_moves_every_fill_against_the_trader(candles: pd.DataFrame) -> None:
    s = 0.0005
    result = run(
        candles,
        enter_long=(10,),
        exit_long=(20,),
        enter_short=(30,),
        exit_short=(40,),
        slippage=s,
    )
    clean = run(candles, enter_long=(10,), exit_long=(20,), enter_short=(30,), exit_short=(40,))
    long_, short = result.trades.itertuples(index=False)

    def capped_up(i: int) -> float:  # backtrader caps a slipped fill at the bar's range
        return float(min(bar(candles, i)["open"] * (1 + s), bar(candles, i)["high"]))

    def capped_down(i: int) -> float:
        return float(max(bar(candles, i)["open"] * (1 - s), bar(candles, i)["low"]))

    assert long_.entry_price == pytest.approx(capped_up(11), rel=1e-12)  # buy higher
    assert long_.exit_price == pytest.approx(capped_down(21), rel=1e-12)  # sell lower
    assert short.side == "short"
    assert short.entry_price == pytest.approx(capped_down(31), rel=1e-12)  # sell lower
    assert short.exit_price == pytest.approx(capped_up(41), rel=1e-12)  # buy back higher
    for slipped, exact in zip(result.trades.itertuples(), clean.trades.itertuples(), strict=True):
        assert slipped.pnl < exact.pnl
    assert long_.entry_price > bar(candles, 11)["open"]  # not capped here: really slipped


def test_slippage_is_capped_at_the_bars_range(candles: pd.DataFrame) -> None:
    frame = candles.copy()
    frame.iloc[11, frame.columns.get_loc("high")] = frame.iloc[11]["open"] * 1.0001
    result = run(frame, enter_long=(10,), slippage=0.01)
    assert result.trades["entry_price"].iloc[0] == frame.iloc[11]["high"]


# --------------------------------------------------------------------------- rejections
def test_order_costing_more_than_cash_is_rejected(candles: pd.DataFrame) -> None:
    """The whole equity (stake 1, the most a cash account may stake) plus commission, at an
    open that gaps up 1 % over the signal close: more than the cash, so both entries fail."""
    frame = candles.copy()
    for signal in (10, 40):
        open_ = frame.iloc[signal]["close"] * 1.01
        row = frame.index[signal + 1]
        frame.loc[row, "open"] = open_
        frame.loc[row, "high"] = max(frame.loc[row, "high"], open_)
        frame.loc[row, "low"] = min(frame.loc[row, "low"], open_)
    result = run(frame, enter_long=(10, 40), exit_long=(20,), stake=1.0)
    assert result.rejected_orders == 2
    assert result.trades.empty
    assert (result.equity == CASH).all()
    assert list(result.orders["status"]) == ["rejected", "rejected"]
    assert result.metrics["trade_count"] == 0


def test_cash_is_checked_at_the_fill_price_not_at_the_signal_close(
    candles: pd.DataFrame,
) -> None:
    """stake 1.0 plus 0.1 % commission: affordable when the next open gaps down 1 %, rejected
    when it gaps up 1 %. Only the check at fill (at the open) tells the two apart."""
    up, down = candles.copy(), candles.copy()
    for frame, factor in ((up, 1.01), (down, 0.99)):
        open_ = frame.iloc[10]["close"] * factor
        row = frame.index[11]
        frame.loc[row, "open"] = open_
        frame.loc[row, "high"] = max(frame.loc[row, "high"], open_)
        frame.loc[row, "low"] = min(frame.loc[row, "low"], open_)
    assert run(up, enter_long=(10,), stake=1.0).rejected_orders == 1
    accepted = run(down, enter_long=(10,), stake=1.0)
    assert accepted.rejected_orders == 0
    assert len(accepted.trades) == 1


# ------------------------------------------------------------------------ end of data
def test_open_position_is_marked_to_market_at_the_last_close(candles: pd.DataFrame) -> None:
    result = run(candles, enter_long=(100,))
    (trade,) = result.trades.itertuples(index=False)
    last_close = float(candles["close"].iloc[-1])
    fee = trade.size * trade.entry_price * 0.001
    assert trade.is_open
    assert pd.isna(trade.exit_time)
    assert trade.exit_price == last_close
    assert trade.commission == pytest.approx(fee, rel=1e-12)
    assert trade.pnl == pytest.approx(trade.size * (last_close - trade.entry_price) - fee)
    assert trade.bars == len(candles) - 1 - 101
    assert result.equity_final == pytest.approx(
        CASH - trade.size * trade.entry_price - fee + trade.size * last_close, rel=1e-12
    )
    assert result.metrics["trade_count"] == 0  # trade statistics count closed trades
    assert result.metrics["open_trades"] == 1


def test_signal_on_the_last_bar_never_fills(candles: pd.DataFrame) -> None:
    result = run(candles, enter_long=(len(candles) - 1,))
    assert result.trades.empty
    assert list(result.orders["status"]) == ["open"]


# ------------------------------------------------------------------------------ equity
def test_equity_is_one_value_per_candle_starting_with_cash(candles: pd.DataFrame) -> None:
    result = run(candles, enter_long=(10,), exit_long=(20,), enter_short=(30,), exit_short=(60,))
    assert len(result.equity) == result.bars == len(candles)
    assert result.equity.index.equals(candles.index)
    assert result.equity.iloc[0] == CASH
    # Between fills the equity moves with the close: value = cash + position × close.
    long_ = next(result.trades.itertuples(index=False))
    cash_after_entry = CASH - long_.size * long_.entry_price * 1.001
    for i in range(11, 21):
        expected = cash_after_entry + long_.size * candles["close"].iloc[i]
        assert result.equity.iloc[i] == pytest.approx(expected, rel=1e-12)
    assert (result.equity.iloc[:11] == CASH).all()


def test_benchmark_buys_with_all_cash_at_the_first_close(candles: pd.DataFrame) -> None:
    result = run(candles)
    closes = candles["close"].to_numpy()
    assert result.benchmark.iloc[0] == CASH
    np.testing.assert_allclose(result.benchmark, CASH * closes / closes[0], rtol=1e-15)
    assert result.benchmark.index.equals(result.equity.index)


def test_no_trade_during_warmup(candles: pd.DataFrame) -> None:
    result = run(candles, enter_long=(5, 49, 50), exit_long=(60,), warmup=50)
    assert result.trades["entry_time"].iloc[0] == candles.index[51]
    assert result.orders["created_time"].min() == candles.index[50]


# -------------------------------------------------------------------------- long/short
def test_reversal_closes_then_opens_at_the_same_open(candles: pd.DataFrame) -> None:
    result = run(candles, enter_long=(10,), enter_short=(20,), exit_short=(30,))
    long_, short = result.trades.itertuples(index=False)
    assert long_.exit_time == short.entry_time == candles.index[21]
    assert long_.exit_price == short.entry_price == bar(candles, 21)["open"]
    equity_20 = result.equity.iloc[20]
    assert short.size == pytest.approx(0.95 * equity_20 / bar(candles, 20)["close"], rel=1e-12)
    fee = short.size * (short.entry_price + short.exit_price) * 0.001
    assert short.pnl == pytest.approx(
        short.size * (short.entry_price - short.exit_price) - fee, rel=1e-12
    )
    assert result.equity_final == pytest.approx(CASH + result.trades["pnl"].sum(), rel=1e-12)


# ------------------------------------------------------------------------------ output
def test_result_shape_and_json(candles: pd.DataFrame) -> None:
    result = run(candles, enter_long=(10, 200), exit_long=(20,))
    assert tuple(result.trades.columns) == TRADE_COLUMNS
    assert tuple(result.orders.columns) == ORDER_COLUMNS
    assert str(result.trades["entry_time"].dtype) == "datetime64[ns, UTC]"
    assert str(result.trades["exit_time"].dtype) == "datetime64[ns, UTC]"
    assert result.engine == "backtrader"
    assert result.strategy == "script"
    assert result.start == candles.index[0]
    assert result.end == candles.index[-1] + pd.Timedelta(hours=1)
    payload = result.to_dict()
    text = json.dumps(payload, allow_nan=False)
    back = json.loads(text)
    for key in ("strategy", "params", "engine", "bars", "metrics", "trades", "equity_final"):
        assert key in back
    assert back["bars"] == 300
    assert back["equity_final"] == pytest.approx(result.equity_final)
    closed, open_ = back["trades"]
    assert closed["entry_time"] == "2024-01-01T11:00:00Z"
    assert closed["exit_time"] == "2024-01-01T21:00:00Z"
    assert open_["exit_time"] is None
    assert open_["is_open"] is True
    for trade in back["trades"]:
        assert set(trade) >= {
            "entry_time",
            "exit_time",
            "side",
            "size",
            "entry_price",
            "exit_price",
            "pnl",
            "pnl_pct",
            "commission",
        }
    assert all(v is None or isinstance(v, float) for v in back["metrics"].values())


@pytest.mark.parametrize("name", ["rsi", "rsi_ma", "rsi_divergence", "grid"])
def test_trade_pnls_add_up_to_the_equity_change(name: str) -> None:
    frame = make_candles(1000)
    result = run_backtest(frame, name, {}, interval="1h")
    assert result.equity_final == pytest.approx(CASH + result.trades["pnl"].sum(), rel=1e-9)
    assert result.metrics["equity_final"] == pytest.approx(result.equity_final)


def test_strategy_may_be_a_name_a_class_or_an_instance(candles: pd.DataFrame) -> None:
    spec = get_strategy("rsi")
    by_name = run_backtest(candles, "rsi", {"period": 7}, interval="1h")
    by_class = run_backtest(candles, type(spec), {"period": 7}, interval="1h")
    by_model = run_backtest(candles, spec, spec.parse_params('{"period": 7}'), interval="1h")
    for other in (by_class, by_model):
        pd.testing.assert_frame_equal(other.trades, by_name.trades)
    assert by_name.slug == "rsi-p7-os30-ob70"
    assert by_name.params == {"period": 7, "oversold": 30.0, "overbought": 70.0}


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "needle"),
    [
        ({"strategy": "rsii"}, "unknown strategy 'rsii'"),
        ({"params": {"oversol": 20}}, "did you mean 'oversold'?"),
        ({"params": {"oversold": 70, "overbought": 30}}, "must be below overbought"),
        ({"params": {"period": 0}}, "period=0"),
        ({"interval": "1hour"}, "unknown interval '1hour'"),
        ({"cash": 0}, "invalid --cash 0"),
        ({"commission": 1.5}, "invalid --commission 1.5"),
        ({"slippage": -0.1}, "invalid --slippage -0.1"),
        ({"stake": 0}, "invalid --stake 0"),
        ({"stake": float("nan")}, "invalid --stake nan"),
        ({"stake": 1.5}, "invalid --stake 1.5: use a fraction of equity in (0, 1]"),
        ({"cash": 1e308}, "invalid --cash 1e+308: use a positive amount up to 1e15"),
        ({"cash": float("inf")}, "invalid --cash inf"),
        ({"commission": -0.001}, "invalid --commission -0.001"),
        ({"slippage": 1.0}, "invalid --slippage 1.0"),
    ],
)
def test_bad_input_is_one_line(candles: pd.DataFrame, call: dict[str, Any], needle: str) -> None:
    kwargs: dict[str, Any] = {"strategy": "rsi", "params": {}, "interval": "1h", **call}
    with pytest.raises(InvalidInputError) as e:
        run_backtest(candles, kwargs.pop("strategy"), kwargs.pop("params"), **kwargs)
    assert "\n" not in str(e.value)
    assert needle in str(e.value)


def test_bad_candles_are_refused(candles: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="no candles"):
        run_backtest(candles.iloc[:0], "rsi", {}, interval="1h")
    with pytest.raises(InvalidInputError, match="share open_time"):
        run_backtest(pd.concat([candles, candles.iloc[[5]]]), "rsi", {}, interval="1h")
    with pytest.raises(InvalidInputError, match="lack columns"):
        run_backtest(candles.drop(columns="close"), "rsi", {}, interval="1h")
    broken = candles.copy()
    broken.iloc[7, broken.columns.get_loc("open")] = np.nan
    with pytest.raises(InvalidInputError, match="missing, infinite or non-positive"):
        run_backtest(broken, "rsi", {}, interval="1h")


def test_unsorted_candles_are_sorted_with_a_warning(
    candles: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    shuffled = candles.sample(frac=1.0, random_state=1)
    with caplog.at_level(logging.WARNING):
        result = run_backtest(shuffled, "rsi", {}, interval="1h")
    assert "sorted them" in caplog.text
    pd.testing.assert_frame_equal(
        result.trades, run_backtest(candles, "rsi", {}, interval="1h").trades
    )


def test_open_time_column_and_naive_times_are_accepted(candles: pd.DataFrame) -> None:
    as_column = candles.reset_index()
    as_column["open_time"] = as_column["open_time"].dt.tz_localize(None)
    result = run_backtest(as_column, "rsi", {}, interval="1h")
    assert result.equity.index.equals(candles.index)


# -------------------------------------------------------------------- FIFO trade builder
def test_trades_from_fills_matches_lots_first_in_first_out() -> None:
    times = pd.date_range("2024-01-01", periods=6, freq="1h", tz="UTC")
    fills = [
        Fill(bar=1, size=2.0, price=100.0, commission=0.2),
        Fill(bar=2, size=1.0, price=110.0, commission=0.11),
        Fill(bar=3, size=-2.5, price=120.0, commission=0.3),
    ]
    trades = trades_from_fills(fills, times, last_close=130.0)
    assert list(trades["size"]) == [2.0, 0.5, 0.5]
    assert list(trades["entry_price"]) == [100.0, 110.0, 110.0]
    assert list(trades["exit_price"]) == [120.0, 120.0, 130.0]
    assert list(trades["is_open"]) == [False, False, True]
    assert list(trades["bars"]) == [2, 1, 3]
    assert trades["commission"].tolist() == pytest.approx([0.2 + 0.24, 0.055 + 0.06, 0.055])
    assert trades["pnl"].tolist() == pytest.approx([40 - 0.44, 5 - 0.115, 10 - 0.055])
    assert trades["pnl"].sum() == pytest.approx(-200 - 110 + 300 + 0.5 * 130 - 0.2 - 0.11 - 0.3)


def test_trades_from_fills_handles_shorts_and_reversals() -> None:
    times = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")
    fills = [
        Fill(bar=1, size=-1.0, price=100.0, commission=0.0),
        Fill(bar=2, size=3.0, price=90.0, commission=0.0),  # cover 1, open 2 long
        Fill(bar=3, size=-2.0, price=95.0, commission=0.0),
    ]
    trades = trades_from_fills(fills, times, last_close=99.0)
    assert list(trades["side"]) == ["short", "long"]
    assert trades["pnl"].tolist() == pytest.approx([10.0, 10.0])
    assert not trades["is_open"].any()
    assert trades_from_fills([], times, 1.0).empty


def test_registry_is_left_clean() -> None:
    assert "script" not in strategy_names()  # specs passed as objects are never registered
