"""Walk-forward analysis: the splits, no look-ahead, the stitched curve, and a planted edge found
out of sample."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from cryptota_core.broker import BrokerSettings
from cryptota_core.errors import InvalidInputError
from cryptota_core.research.drift import check_drift
from cryptota_core.research.search import SearchSpec
from cryptota_core.research.walk_forward import (
    WalkForwardResult,
    annual_log_return,
    splits,
    walk_forward,
    walk_forward_efficiency,
)
from cryptota_core.strategies import get_strategy
from tests.core.research.test_optimize import RSI_GRID, candles_from_close, random_walk


def planted(n: int = 6_000, seed: int = 1) -> pd.DataFrame:
    """A mean-reverting log price: oversold dips come back, which RSI entries exploit."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = 0.9 * x[i - 1] + rng.normal(0.0, 0.01)
    return candles_from_close(30_000 * np.exp(x), seed)


def test_rolling_and_anchored_splits() -> None:
    rolling = splits(1_000, windows=4, in_sample_ratio=3.0, anchored=False)
    assert [(s.is_start, s.is_end, s.oos_end) for s in rolling] == [
        (0, 432, 574),
        (142, 574, 716),
        (284, 716, 858),
        (426, 858, 1_000),
    ]
    anchored = splits(1_000, windows=4, in_sample_ratio=3.0, anchored=True)
    assert {s.is_start for s in anchored} == {0}
    assert [s.oos_start for s in anchored] == [s.oos_start for s in rolling]
    assert all(s.is_end == s.oos_start for s in rolling + anchored)
    with pytest.raises(InvalidInputError, match="too little data for the split"):
        splits(200, windows=5, in_sample_ratio=3.0, anchored=False)


def test_planted_pattern_is_found_out_of_sample() -> None:
    result = walk_forward(planted(), SearchSpec(strategy="rsi", grid=RSI_GRID), interval="1h")
    stats = result.statistics
    assert len(result.windows) == 5
    assert all((w.out_sample_return or 0.0) > 0.0 for w in result.windows)
    assert stats["profitable_windows"] == 1.0
    assert stats["oos_total_return"] > 0.5
    assert stats["walk_forward_efficiency"] > 0.0
    assert set(stats["parameter_stability"]) == {"period", "oversold", "overbought"}


def test_random_walk_gives_no_reliable_out_of_sample_edge() -> None:
    result = walk_forward(
        random_walk(6_000, 7), SearchSpec(strategy="rsi", grid=RSI_GRID), interval="1h"
    )
    returns = [w.out_sample_return or 0.0 for w in result.windows]
    assert min(returns) < 0.0 or result.statistics["walk_forward_efficiency"] < 0.5


def test_out_of_sample_runs_never_see_later_candles() -> None:
    """Changing every candle after a window's end changes nothing about that window."""
    candles = planted()
    spec = SearchSpec(strategy="rsi", grid=RSI_GRID)
    base = walk_forward(candles, spec, interval="1h", windows=3)
    cut = base.windows[1].out_sample_end
    altered = candles.copy()
    later = altered.index >= cut
    altered.loc[later, ["open", "high", "low", "close"]] *= 1.5
    other = walk_forward(altered, spec, interval="1h", windows=3)
    for a, b in zip(base.windows[:2], other.windows[:2], strict=True):
        assert (a.best_slug, a.out_sample_return) == (b.best_slug, b.out_sample_return)


def test_stitched_equity_chains_the_windows() -> None:
    candles = planted()
    result = walk_forward(candles, SearchSpec(strategy="rsi", grid=RSI_GRID), interval="1h")
    equity = result.oos_equity
    assert equity.iloc[0] == 10_000.0
    assert equity.index.is_monotonic_increasing and equity.index.is_unique
    growth = np.prod([1.0 + (w.out_sample_return or 0.0) for w in result.windows])
    assert equity.iloc[-1] / equity.iloc[0] == pytest.approx(growth, rel=1e-12)
    # Every bar from the close before the first window to the last one, none twice: each
    # window starts at the close where the previous one ended.
    first = splits(len(candles), windows=5, in_sample_ratio=3.0, anchored=False)[0].oos_start
    assert list(equity.index) == list(candles.index[first - 1 :])
    for before, after in itertools.pairwise(result.windows):
        assert after.out_sample_equity.index[0] == before.out_sample_equity.index[-1]


def rsi_reference(close: np.ndarray, period: int) -> list[float]:
    """Wilder's RSI as backtrader defines it (seeded on the mean of the first ``period`` moves,
    then smoothed with 1/period), in plain Python: NaN before bar ``period``."""
    up = [0.0] + [max(b - a, 0.0) for a, b in itertools.pairwise(close)]
    down = [0.0] + [max(a - b, 0.0) for a, b in itertools.pairwise(close)]
    out = [math.nan] * len(close)
    ma_up = math.fsum(up[1 : period + 1]) / period
    ma_down = math.fsum(down[1 : period + 1]) / period
    for i in range(period, len(close)):
        if i > period:
            ma_up = ma_up * (1 - 1 / period) + up[i] / period
            ma_down = ma_down * (1 - 1 / period) + down[i] / period
        rs = ma_up / ma_down if ma_down else (1.0 if ma_up == 0 else math.inf)
        out[i] = 100 - 100 / (1 + rs)
    return out


def rsi_window_reference(
    candles: pd.DataFrame,
    params: dict[str, float],
    *,
    history_start: int,
    start: int,
    end: int,
    commission: float = 0.001,
    slippage: float = 0.0,
    stake: float = 0.95,
    cash: float = 10_000.0,
) -> tuple[list[float], int]:
    """The walk-forward's definition of an out-of-sample window, written out independently:
    RSI on ``candles[history_start:end]``; flat at the close of bar ``start − 1``, which is the
    first decision (entry when RSI < oversold, exit when RSI > overbought, filled at the next
    open with slippage, ``stake`` of the value at the signal close); a position open at the
    last close is sold there. Returns the equity at closes ``start − 1 .. end − 1`` and the
    number of round trips."""
    o, h, lo, c = (
        candles[k].to_numpy()[history_start:end] for k in ("open", "high", "low", "close")
    )
    rsi = rsi_reference(c, int(params["period"]))
    size, pending, trips = 0.0, 0.0, 0
    equity = []
    for t in range(start - 1 - history_start, len(c)):
        if pending > 0:
            price = min(o[t] * (1 + slippage), h[t])
            if cash - pending * price * (1 + commission) >= 0:
                cash -= pending * price + pending * price * commission
                size = pending
        elif pending < 0:
            price = max(o[t] * (1 - slippage), lo[t])
            cash += size * price - size * price * commission
            size, trips = 0.0, trips + 1
        pending = 0.0
        value = cash + size * c[t]
        if size == 0 and rsi[t] < params["oversold"]:
            pending = stake * value / c[t]
        elif size > 0 and rsi[t] > params["overbought"]:
            pending = -1.0
        equity.append(value)
    if size > 0:
        price = max(c[-1] * (1 - slippage), lo[-1])
        equity[-1] = cash + size * price - size * price * commission
        trips += 1
    return equity, trips


def test_out_of_sample_equals_a_backtest_warmed_up_on_all_earlier_candles() -> None:
    """Window 0 out of sample is the chosen set's backtest with RSI computed on every candle
    from the first one (not restarted ``period`` bars before the window), trading from flat at
    the close before the window and sold at its last close; a restarted RSI gives another
    result, so the warm-up matters on these candles."""
    candles = planted(seed=2)
    result = walk_forward(candles, SearchSpec(strategy="rsi", grid=RSI_GRID), interval="1h")
    cut = splits(len(candles), windows=5, in_sample_ratio=3.0, anchored=False)[0]
    window = result.windows[0]
    full, trips = rsi_window_reference(
        candles, window.best_params, history_start=0, start=cut.oos_start, end=cut.oos_end
    )
    np.testing.assert_allclose(window.out_sample_equity.to_numpy(), full, rtol=1e-12)
    assert window.out_sample_metrics["trade_count"] == trips > 0
    assert window.out_sample_return == pytest.approx(full[-1] / full[0] - 1, rel=1e-12)
    warmup = get_strategy("rsi").warmup(get_strategy("rsi").parse_params(window.best_params))
    restarted, _ = rsi_window_reference(
        candles,
        window.best_params,
        history_start=cut.oos_start - 1 - warmup,
        start=cut.oos_start,
        end=cut.oos_end,
    )
    assert restarted[-1] != pytest.approx(full[-1], rel=1e-6)


def test_drift_is_underperforming_the_walk_forward_expectation() -> None:
    """The planted edge's winner holds on more of the same data, and drifts when the market
    turns into a steady decline the strategy keeps buying into."""
    candles = planted()
    result = walk_forward(candles, SearchSpec(strategy="rsi", grid=RSI_GRID), interval="1h")
    sharpes = [w.out_sample_metrics["sharpe_ratio"] for w in result.windows]
    best = result.windows[-1].best_params
    holds = check_drift(
        planted(24 * 14, seed=9),
        strategy="rsi",
        params=best,
        interval="1h",
        out_of_sample_sharpes=sharpes,
    )
    assert not holds.drifted, holds.explain()
    rng = np.random.default_rng(3)
    falling = candles_from_close(30_000 * np.exp(np.cumsum(rng.normal(-0.004, 0.01, 24 * 14))))
    drifted = check_drift(
        falling, strategy="rsi", params=best, interval="1h", out_of_sample_sharpes=sharpes
    )
    assert drifted.drifted, drifted.explain()
    assert drifted.threshold == pytest.approx(np.mean(sharpes) - np.std(sharpes, ddof=1))
    with pytest.raises(InvalidInputError, match="materialise walk_forward_report"):
        check_drift(
            falling, strategy="rsi", params=best, interval="1h", out_of_sample_sharpes=[None]
        )


SINGLE_RSI = {"period": [14], "oversold": [30], "overbought": [70]}
"""One set, so the winner of every window is known: RSI(14) 30/70."""

SLIPPED = BrokerSettings(commission=0.001, slippage=0.0005)


@pytest.fixture(scope="module")
def rise_then_fall() -> pd.DataFrame:
    """1,000 hourly candles: a random walk, then a steady rise over all of window 0 (RSI 100:
    nothing to buy), then a fall over the last 20 candles (RSI under 30: a buy that is still
    open at window 1's end)."""
    rng = np.random.default_rng(5)
    steps = np.concatenate([rng.normal(0.0, 0.01, 550), np.full(430, 0.001), np.full(20, -0.005)])
    return candles_from_close(30_000 * np.exp(np.cumsum(steps)), 5)


@pytest.fixture(scope="module")
def two_windows(rise_then_fall: pd.DataFrame) -> WalkForwardResult:
    return walk_forward(
        rise_then_fall,
        SearchSpec(strategy="rsi", grid=SINGLE_RSI),
        interval="1h",
        windows=2,
        broker=SLIPPED,
    )


def test_a_window_without_trades_returns_nothing(two_windows: WalkForwardResult) -> None:
    window = two_windows.windows[0]
    assert window.out_sample_metrics["trade_count"] == 0
    assert window.out_sample_return == 0.0
    assert window.out_sample_annual_log_return == 0.0
    assert set(window.out_sample_equity) == {10_000.0}


def test_a_position_open_at_the_window_end_is_sold_at_its_last_close_with_fees(
    rise_then_fall: pd.DataFrame, two_windows: WalkForwardResult
) -> None:
    """The buy of the final fall is sold at window 1's last close, slipped (floored at the low)
    and paying its commission: the exact amounts, worked out from the candles."""
    window = two_windows.windows[1]
    (trade,) = window.out_sample_trades.to_dict(orient="records")
    bars = rise_then_fall.reset_index()
    entry = int(bars.index[bars["open_time"] == trade["entry_time"]][0])
    assert entry >= 980  # bought in the fall, after its signal bar
    c, s = SLIPPED.commission, SLIPPED.slippage
    size = 0.95 * 10_000.0 / bars["close"][entry - 1]
    entry_price = min(bars["open"][entry] * (1 + s), bars["high"][entry])
    cash = 10_000.0 - size * entry_price - size * entry_price * c
    last = bars.iloc[-1]
    exit_price = max(last["close"] * (1 - s), last["low"])
    assert exit_price == last["low"]  # the slipped close is below the bar: floored
    exit_fee = size * exit_price * c
    final = cash + size * exit_price - exit_fee
    assert trade["size"] == pytest.approx(size, rel=1e-12)
    assert trade["exit_price"] == exit_price
    assert trade["exit_time"] == window.out_sample_end
    assert not trade["is_open"]
    assert trade["commission"] == pytest.approx(size * entry_price * c + exit_fee, rel=1e-12)
    assert window.out_sample_metrics["total_commission"] == pytest.approx(
        trade["commission"], rel=1e-12
    )
    assert window.out_sample_equity.iloc[-1] == pytest.approx(final, rel=1e-12)
    assert window.out_sample_return == pytest.approx(final / 10_000.0 - 1, rel=1e-12)
    marked = cash + size * last["close"]  # what the engine reports with the position open
    assert marked - window.out_sample_equity.iloc[-1] == pytest.approx(
        size * (last["close"] - exit_price) + exit_fee, rel=1e-9
    )
    assert window.out_sample_metrics["trade_count"] == 1
    assert trade["pnl"] == pytest.approx(final - 10_000.0, rel=1e-12)


def test_walk_forward_efficiency_is_the_median_ratio_of_annualised_log_returns(
    two_windows: WalkForwardResult,
) -> None:
    """Only windows with both sides defined and a positive in-sample return count."""
    assert annual_log_return(math.e - 1, 24, 8_760.0) == pytest.approx(365.0, rel=1e-15)
    assert annual_log_return(-1.0, 24, 8_760.0) is None
    assert annual_log_return(0.1, 0, 8_760.0) is None
    template = two_windows.windows[0]
    sides = [(0.5, 0.25), (1.0, 0.3), (-0.2, 0.1), (None, 0.4), (2.0, None), (0.4, -0.2), (0.0, 1)]
    windows = [
        dataclasses.replace(template, in_sample_annual_log_return=i, out_sample_annual_log_return=o)
        for i, o in sides
    ]
    efficiency, counted = walk_forward_efficiency(windows)
    assert counted == 3
    assert efficiency == pytest.approx(0.3, rel=1e-15)  # median of 0.5, 0.3 and -0.5
    assert walk_forward_efficiency(windows[2:5]) == (None, 0)
    # A real run: its statistics are the same formula over its windows, and each side is the
    # window's log growth per bar, annualised (200 out-of-sample returns of 1h candles).
    stats = two_windows.statistics
    assert (stats["walk_forward_efficiency"], stats["walk_forward_efficiency_window_count"]) == (
        walk_forward_efficiency(two_windows.windows)
    )
    last = two_windows.windows[1]
    assert last.out_sample_annual_log_return == pytest.approx(
        math.log(last.out_sample_equity.iloc[-1] / 10_000.0) * 8_760 / 200, rel=1e-12
    )
    assert "annual_return" not in json.dumps(two_windows.to_dict()).replace("annual_log_", "")
