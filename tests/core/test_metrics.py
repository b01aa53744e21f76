"""Tests of cryptota_core.metrics: equality with empyrical-reloaded on real-shaped return series,
hand-computed trade statistics, degenerate inputs, and the probabilistic/deflated Sharpe ratio."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import empyrical as ep
import numpy as np
import pandas as pd
import pytest

from cryptota_core.errors import InvalidInputError
from cryptota_core.market.intervals import interval_timedelta, periods_per_year
from cryptota_core.metrics import (
    METRIC_NAMES,
    compute_metrics,
    drawdown_episodes_nb,
    longest_run_nb,
    returns_from_equity,
)
from cryptota_core.trades import TRADE_COLUMNS, empty_trades

START = pd.Timestamp("2024-01-01", tz="UTC")
CASH = 10_000.0


def equity_from_returns(returns: np.ndarray, interval: str, cash: float = CASH) -> pd.Series:
    """An equity curve as the engines emit it: bar-close values, first value the cash."""
    values = cash * np.concatenate(([1.0], np.cumprod(1.0 + returns)))
    index = pd.date_range(START, periods=values.size, freq=interval_timedelta(interval))
    return pd.Series(values, index=index.rename("open_time"), name="equity")


@dataclass(frozen=True)
class Case:
    """A seeded, real-shaped return series with a correlated buy-and-hold benchmark."""

    name: str
    interval: str
    returns: np.ndarray
    benchmark_returns: np.ndarray


def _cases() -> list[Case]:
    rng = np.random.default_rng(20240101)
    cases = []

    r = rng.normal(0.001, 0.03, 730)
    cases.append(Case("normal_1d", "1d", r, 0.8 * r + rng.normal(0.0, 0.01, r.size)))

    r = rng.standard_t(3, 3000) * 0.004
    cases.append(Case("student_t_1h", "1h", r, 0.6 * r + rng.normal(0.0, 0.003, r.size)))

    r = rng.normal(0.0006, 0.002, 2000)
    cases.append(Case("trending_1h", "1h", r, rng.normal(0.0002, 0.004, r.size)))

    r = np.zeros(400)
    moves = rng.choice(r.size, size=15, replace=False)
    r[moves] = rng.normal(0.0, 0.05, moves.size)
    cases.append(Case("mostly_flat_1d", "1d", r, rng.normal(0.0, 0.02, r.size)))

    r = rng.normal(0.0, 5e-4, 3000)
    cases.append(Case("normal_1m", "1m", r, r + rng.normal(0.0, 2e-4, r.size)))

    r = rng.standard_t(4, 1500) * 0.008 - 0.0005
    cases.append(Case("losing_t_4h", "4h", r, rng.normal(0.0, 0.01, r.size)))
    return cases


CASES = _cases()

EmpyricalRef = Callable[[pd.Series, pd.Series, float], float]

EMPYRICAL: dict[str, EmpyricalRef] = {
    "total_return": lambda r, b, p: ep.cum_returns_final(r),
    "annual_return": lambda r, b, p: ep.annual_return(r, annualization=p),
    "buy_and_hold_return": lambda r, b, p: ep.cum_returns_final(b),
    "annual_volatility": lambda r, b, p: ep.annual_volatility(r, annualization=p),
    "downside_risk": lambda r, b, p: ep.downside_risk(r, annualization=p),
    "max_drawdown": lambda r, b, p: ep.max_drawdown(r),
    "var_5": lambda r, b, p: ep.value_at_risk(r, cutoff=0.05),
    "cvar_5": lambda r, b, p: ep.conditional_value_at_risk(r, cutoff=0.05),
    "sharpe_ratio": lambda r, b, p: ep.sharpe_ratio(r, annualization=p),
    "sortino_ratio": lambda r, b, p: ep.sortino_ratio(r, annualization=p),
    "calmar_ratio": lambda r, b, p: ep.calmar_ratio(r, annualization=p),
    "omega_ratio": lambda r, b, p: ep.omega_ratio(r, annualization=p),
    "tail_ratio": lambda r, b, p: ep.tail_ratio(r),
    "stability": lambda r, b, p: ep.stability_of_timeseries(r),
    "alpha": lambda r, b, p: ep.alpha_beta(r, b, annualization=p)[0],
    "beta": lambda r, b, p: ep.alpha_beta(r, b, annualization=p)[1],
    "information_ratio": lambda r, b, p: ep.excess_sharpe(r, b) * math.sqrt(p),
}
"""Every metric empyrical-reloaded also computes, as empyrical computes it (DESIGN §6)."""


def assert_matches_empyrical(name: str, ours: float | None, theirs: float) -> None:
    """Equal to 1e-9 relative where empyrical is finite; None where empyrical is NaN or ±inf."""
    theirs = float(theirs)
    if not math.isfinite(theirs):
        assert ours is None, f"{name}: empyrical gives {theirs}, we give {ours}"
    else:
        assert ours is not None, f"{name}: empyrical gives {theirs}, we give None"
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-15), name


def assert_well_formed(metrics: dict[str, float | None]) -> None:
    assert tuple(metrics) == METRIC_NAMES
    for name, value in metrics.items():
        assert value is None or (type(value) is float and math.isfinite(value)), (name, value)


def trade(
    entry_bar: int,
    exit_bar: int | None,
    pnl: float,
    pnl_pct: float,
    commission: float,
    index: pd.DatetimeIndex,
) -> dict[str, object]:
    """One row of a trades frame; ``exit_bar`` None makes it the open position at the end."""
    is_open = exit_bar is None
    held_until = len(index) - 1 if exit_bar is None else exit_bar
    return {
        "entry_time": index[entry_bar],
        "exit_time": pd.NaT if exit_bar is None else index[exit_bar],
        "side": "long",
        "size": 1.0,
        "entry_price": 100.0,
        "exit_price": 100.0 * (1.0 + pnl_pct),
        "pnl": pnl,
        "pnl_pct": pnl_pct,
        "commission": commission,
        "bars": held_until - entry_bar,
        "is_open": is_open,
    }


def trades_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(TRADE_COLUMNS))
    return frame.astype({c: t for c, t in empty_trades().dtypes.items()})


# --------------------------------------------------------------------------------------------
# Equality with empyrical
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_metrics_equal_empyrical_with_365_day_annualisation(case: Case) -> None:
    equity = equity_from_returns(case.returns, case.interval)
    benchmark = equity_from_returns(case.benchmark_returns, case.interval, cash=42_000.0)
    metrics = compute_metrics(equity, empty_trades(), interval=case.interval, benchmark=benchmark)

    assert_well_formed(metrics)
    periods = periods_per_year(case.interval)
    r = returns_from_equity(equity)
    b = returns_from_equity(benchmark)
    for name, reference in EMPYRICAL.items():
        with np.errstate(all="ignore"):  # empyrical's own 0/0 warnings
            theirs = reference(r, b, periods)
        assert_matches_empyrical(name, metrics[name], theirs)
    assert sum(metrics[name] is not None for name in EMPYRICAL) >= len(EMPYRICAL) - 2


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_daily_sharpe_resamples_to_utc_day_closes_and_annualises_with_365(case: Case) -> None:
    equity = equity_from_returns(case.returns, case.interval)
    metrics = compute_metrics(equity, empty_trades(), interval=case.interval)

    closes = equity.resample("1D").last().dropna()
    expected = ep.sharpe_ratio(ep.simple_returns(closes), annualization=365)
    assert_matches_empyrical("daily_sharpe_ratio", metrics["daily_sharpe_ratio"], expected)
    if case.interval == "1d":
        assert metrics["daily_sharpe_ratio"] == pytest.approx(metrics["sharpe_ratio"], rel=1e-12)


def test_annualisation_follows_the_interval_not_252_days() -> None:
    r = CASES[0].returns
    one_day = compute_metrics(equity_from_returns(r, "1d"), empty_trades(), interval="1d")
    one_hour = compute_metrics(equity_from_returns(r, "1h"), empty_trades(), interval="1h")

    daily = one_day["sharpe_ratio"]
    assert daily is not None
    assert one_hour["sharpe_ratio"] == pytest.approx(daily * math.sqrt(24), rel=1e-12)
    assert one_day["annual_volatility"] == pytest.approx(np.std(r, ddof=1) * math.sqrt(365))


def test_returns_from_equity_drops_the_first_bar() -> None:
    equity = pd.Series([100.0, 110.0, 99.0])
    assert returns_from_equity(equity).tolist() == pytest.approx([0.1, -0.1])
    assert returns_from_equity(equity.iloc[:1]).empty


# --------------------------------------------------------------------------------------------
# Drawdowns
# --------------------------------------------------------------------------------------------


def test_drawdown_depth_duration_and_ulcer_on_a_hand_built_curve() -> None:
    values = [100.0, 110.0, 99.0, 105.0, 110.0, 120.0, 102.0, 114.0]
    index = pd.date_range(START, periods=len(values), freq="1h")
    metrics = compute_metrics(pd.Series(values, index=index), empty_trades(), interval="1h")

    # Episode 1: peak 110 (bar 1), trough 99, regained at bar 4 -> 3 bars, depth -0.1.
    # Episode 2: peak 120 (bar 5), trough 102, never regained -> 7 - 5 = 2 bars, depth -0.15.
    assert metrics["max_drawdown"] == pytest.approx(102 / 120 - 1)
    assert metrics["avg_drawdown"] == pytest.approx(((99 / 110 - 1) + (102 / 120 - 1)) / 2)
    assert metrics["max_drawdown_duration_bars"] == 3.0
    assert metrics["max_drawdown_duration_days"] == pytest.approx(3 / 24)
    drawdowns = [0, 0, 99 / 110 - 1, 105 / 110 - 1, 0, 0, 102 / 120 - 1, 114 / 120 - 1]
    expected_ulcer = math.sqrt(sum(d * d for d in drawdowns) / len(drawdowns))
    assert metrics["ulcer_index"] == pytest.approx(expected_ulcer)
    assert metrics["equity_peak"] == 120.0
    assert metrics["equity_final"] == 114.0
    assert metrics["total_return"] == pytest.approx(0.14)
    assert metrics["best_period_return"] == pytest.approx(114 / 102 - 1)
    assert metrics["worst_period_return"] == pytest.approx(102 / 120 - 1)


def test_drawdown_kernel_counts_a_drawdown_starting_on_the_last_bar() -> None:
    # The peak is the latest bar at the high (bar 2, a tie), as backtesting.py dates it.
    durations, depths = drawdown_episodes_nb(np.array([1.0, 2.0, 2.0, 1.5]))
    assert durations.tolist() == [1]
    assert depths.tolist() == pytest.approx([-0.25])
    durations, depths = drawdown_episodes_nb(np.array([1.0, 2.0, 3.0]))
    assert durations.size == 0
    assert depths.size == 0


def test_longest_run_kernel() -> None:
    assert longest_run_nb(np.array([True, True, False, True, True, True, False])) == 3
    assert longest_run_nb(np.array([False, False])) == 0
    assert longest_run_nb(np.zeros(0, dtype=bool)) == 0


# --------------------------------------------------------------------------------------------
# Trade statistics
# --------------------------------------------------------------------------------------------

BARS_1H = pd.date_range(START, periods=20, freq="1h", name="open_time")


def hand_built_trades() -> pd.DataFrame:
    """Six closed trades (exit order W W W L L W) and one open trade, rows deliberately not in
    exit order."""
    a = trade(1, 3, 100.0, 0.10, 1.0, BARS_1H)
    b = trade(3, 4, 30.0, 0.03, 1.0, BARS_1H)
    c = trade(5, 8, 20.0, 0.02, 0.5, BARS_1H)
    d = trade(8, 9, -50.0, -0.05, 1.0, BARS_1H)
    e = trade(10, 12, -40.0, -0.04, 0.5, BARS_1H)
    f = trade(13, 14, 10.0, 0.01, 0.5, BARS_1H)
    still_open = trade(17, None, 500.0, 0.5, 2.0, BARS_1H)
    return trades_frame([c, a, still_open, f, d, b, e])


def test_trade_statistics_by_hand_exclude_the_open_trade() -> None:
    equity = pd.Series(np.linspace(CASH, CASH + 570.0, len(BARS_1H)), index=BARS_1H)
    metrics = compute_metrics(equity, hand_built_trades(), interval="1h")

    pnl = [100.0, 30.0, 20.0, -50.0, -40.0, 10.0]
    assert metrics["trade_count"] == 6.0
    assert metrics["open_trades"] == 1.0
    assert metrics["win_rate"] == pytest.approx(4 / 6)
    assert metrics["profit_factor"] == pytest.approx(160 / 90)
    assert metrics["expectancy"] == pytest.approx(70 / 6)
    assert metrics["expectancy_pct"] == pytest.approx(0.07 / 6)
    assert metrics["sqn"] == pytest.approx(math.sqrt(6) * (70 / 6) / statistics.stdev(pnl))
    assert metrics["avg_win"] == pytest.approx(40.0)
    assert metrics["avg_loss"] == pytest.approx(-45.0)
    # backtesting.py: win_rate - (1 - win_rate) / (avg_win / -avg_loss) = 4/6 - (2/6) / (40/45)
    assert metrics["kelly_criterion"] == pytest.approx(4 / 6 - (2 / 6) / (40 / 45))
    assert metrics["best_trade_pct"] == pytest.approx(0.10)
    assert metrics["worst_trade_pct"] == pytest.approx(-0.05)
    growth = 1.10 * 1.03 * 1.02 * 0.95 * 0.96 * 1.01
    assert metrics["avg_trade_pct"] == pytest.approx(growth ** (1 / 6) - 1)
    assert metrics["max_consecutive_wins"] == 3.0  # in row order it would be 3 ...
    assert metrics["max_consecutive_losses"] == 2.0  # ... but 1: streaks follow exit order
    assert metrics["avg_trade_duration_bars"] == pytest.approx(10 / 6)
    assert metrics["max_trade_duration_bars"] == 3.0
    # Fees paid: the six closed trades' 4.5 plus the open trade's entry fee of 2.0.
    assert metrics["total_commission"] == pytest.approx(6.5)
    # Held bars [1,3) [3,4) [5,8) [8,9) [10,12) [13,14) and [17, end): 13 of 20 bars.
    assert metrics["exposure_pct"] == pytest.approx(13 / 20)


def test_exposure_bars_given_by_the_engine_take_precedence() -> None:
    equity = pd.Series(CASH, index=BARS_1H)
    metrics = compute_metrics(equity, hand_built_trades(), interval="1h", exposure_bars=7)
    assert metrics["exposure_pct"] == pytest.approx(7 / 20)


def test_break_even_trade_is_neither_win_nor_loss_and_breaks_a_streak() -> None:
    rows = [
        trade(0, 1, 5.0, 0.05, 0.0, BARS_1H),
        trade(1, 2, 0.0, 0.0, 0.0, BARS_1H),
        trade(2, 3, 5.0, 0.05, 0.0, BARS_1H),
        trade(3, 4, -5.0, -0.05, 0.0, BARS_1H),
    ]
    metrics = compute_metrics(pd.Series(CASH, index=BARS_1H), trades_frame(rows), interval="1h")
    assert metrics["win_rate"] == pytest.approx(2 / 4)
    assert metrics["max_consecutive_wins"] == 1.0
    assert metrics["profit_factor"] == pytest.approx(10 / 5)


def test_all_losing_trades_leave_ratios_that_need_a_win_undefined() -> None:
    rows = [trade(i, i + 1, -10.0 * (i + 1), -0.01 * (i + 1), 0.1, BARS_1H) for i in range(4)]
    equity = pd.Series(np.linspace(CASH, CASH - 100.0, len(BARS_1H)), index=BARS_1H)
    metrics = compute_metrics(equity, trades_frame(rows), interval="1h")

    assert_well_formed(metrics)
    assert metrics["win_rate"] == 0.0
    assert metrics["profit_factor"] == 0.0
    assert metrics["avg_win"] is None
    assert metrics["kelly_criterion"] is None
    assert metrics["max_consecutive_losses"] == 4.0
    assert metrics["max_consecutive_wins"] == 0.0
    assert metrics["sqn"] == pytest.approx(
        math.sqrt(4) * -25.0 / statistics.stdev([10, 20, 30, 40])
    )


def test_only_winning_trades_have_no_profit_factor() -> None:
    rows = [trade(0, 2, 10.0, 0.01, 0.0, BARS_1H), trade(3, 5, 20.0, 0.02, 0.0, BARS_1H)]
    metrics = compute_metrics(pd.Series(CASH, index=BARS_1H), trades_frame(rows), interval="1h")
    assert metrics["profit_factor"] is None
    assert metrics["kelly_criterion"] is None
    assert metrics["win_rate"] == 1.0


def test_trades_frame_without_the_trade_columns_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="TRADE_COLUMNS"):
        compute_metrics(pd.Series(CASH, index=BARS_1H), pd.DataFrame({"pnl": [1.0]}), interval="1h")


# --------------------------------------------------------------------------------------------
# Degenerate inputs: every key present, each value a finite float or None, no exception
# --------------------------------------------------------------------------------------------


def _degenerate_inputs() -> dict[str, tuple[pd.Series, pd.DataFrame, pd.Series | None]]:
    one_bar = BARS_1H[:1]
    empty_index = BARS_1H[:0]
    rng = np.random.default_rng(7)
    wiggle = pd.Series(CASH * np.cumprod(1 + rng.normal(0, 0.01, 20)), index=BARS_1H)
    losers = trades_frame([trade(i, i + 1, -1.0, -0.01, 0.0, BARS_1H) for i in range(3)])
    return {
        "no_trades": (wiggle, empty_trades(), wiggle * 0.5),
        "all_losses": (wiggle, losers, None),
        "flat_equity": (pd.Series(CASH, index=BARS_1H), empty_trades(), pd.Series(1.0, BARS_1H)),
        "one_bar": (pd.Series([CASH], index=one_bar), empty_trades(), pd.Series([1.0], one_bar)),
        "empty": (pd.Series([], index=empty_index, dtype="float64"), empty_trades(), None),
        "constant_gain": (
            pd.Series(CASH * 1.01 ** np.arange(20), index=BARS_1H),
            empty_trades(),
            None,
        ),
        "wiped_out": (
            pd.Series([CASH, 5_000.0, 0.0, 0.0, 0.0], index=BARS_1H[:5]),
            losers,
            None,
        ),
        "nan_in_equity": (wiggle.where(wiggle.index != BARS_1H[5]), losers, wiggle),
    }


DEGENERATE = _degenerate_inputs()


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_degenerate_inputs_give_every_key_as_a_finite_float_or_none(name: str) -> None:
    equity, trades, benchmark = DEGENERATE[name]
    metrics = compute_metrics(equity, trades, interval="1h", benchmark=benchmark)
    assert_well_formed(metrics)


def test_flat_equity() -> None:
    equity, trades, benchmark = DEGENERATE["flat_equity"]
    metrics = compute_metrics(equity, trades, interval="1h", benchmark=benchmark)

    assert metrics["total_return"] == 0.0
    assert metrics["annual_return"] == 0.0
    assert metrics["annual_volatility"] == 0.0
    assert metrics["max_drawdown"] == 0.0
    assert metrics["max_drawdown_duration_bars"] == 0.0
    assert metrics["avg_drawdown"] is None  # no drawdown episode to average
    assert metrics["ulcer_index"] == 0.0
    for name in ("sharpe_ratio", "sortino_ratio", "calmar_ratio", "omega_ratio", "tail_ratio"):
        assert metrics[name] is None, name
    assert metrics["stability"] is None
    assert metrics["beta"] is None  # the benchmark does not move
    r = returns_from_equity(equity)
    for name, reference in EMPYRICAL.items():
        with np.errstate(all="ignore"):  # empyrical's own 0/0 warnings
            theirs = reference(r, r, 8760.0)
        assert_matches_empyrical(name, metrics[name], theirs)


def test_one_bar_and_empty_curves() -> None:
    one = compute_metrics(*DEGENERATE["one_bar"][:2], interval="1h")
    assert one["total_return"] == 0.0
    assert one["equity_final"] == CASH
    assert one["annual_return"] is None
    assert one["max_drawdown"] is None
    assert one["exposure_pct"] == 0.0

    empty = compute_metrics(*DEGENERATE["empty"][:2], interval="1h")
    assert empty["trade_count"] == 0.0
    assert empty["exposure_pct"] is None
    assert all(empty[name] is None for name in METRIC_NAMES[:26])


def test_zero_dispersion_gives_none_not_a_huge_ratio() -> None:
    # pct_change of 1.01 ** k differs from 0.01 in the last bits: empyrical's exact max == min
    # guard misses it and reports a Sharpe ratio near 6e15.
    equity, trades, _ = DEGENERATE["constant_gain"]
    assert ep.sharpe_ratio(returns_from_equity(equity), annualization=8760) > 1e12
    metrics = compute_metrics(equity, trades, interval="1h", benchmark=equity * 0.0 + 1.0)
    assert metrics["sharpe_ratio"] is None
    assert metrics["sortino_ratio"] is None
    assert metrics["information_ratio"] is None
    assert metrics["stability"] == pytest.approx(1.0)


def test_unknown_interval_names_the_accepted_values() -> None:
    with pytest.raises(InvalidInputError, match="did you mean '1h'"):
        compute_metrics(pd.Series(CASH, index=BARS_1H), empty_trades(), interval="1hr")


# --------------------------------------------------------------------------------------------
# Probabilistic and deflated Sharpe ratio
# --------------------------------------------------------------------------------------------
