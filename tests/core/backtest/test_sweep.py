"""The sweep against the fast engine: every set's figures equal compute_metrics' values on the
fast engine's run of the same set (exactly where the sweep claims exact, within
``figure_tolerance`` elsewhere), its blocks hold the run's returns, and bad input is one line."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptota_core.backtest.fast import SUPPORTED, run_fast_backtest
from cryptota_core.backtest.sweep import (
    EXACT_FIGURES,
    FIGURES,
    OBJECTIVES,
    SweepResult,
    figure_tolerance,
    run_sweep,
)
from cryptota_core.errors import InvalidInputError
from cryptota_core.kernels.indicators import rsi_nb
from cryptota_core.kernels.sweep import level_sweep_nb
from cryptota_core.market.intervals import periods_per_year
from cryptota_core.strategies import get_strategy
from cryptota_core.strategies.rsi import Rsi, _lanes
from tests.core.backtest.candles_fixture import make_candles
from tests.core.backtest.parity import (
    PROFILE,
    broker_settings,
    candle_series,
    make_series,
    strategy_params,
)

N_BLOCKS = 4


def assert_sweep_matches_fast_engine(
    frame: pd.DataFrame, result: SweepResult, interval: str, broker: dict[str, float]
) -> None:
    """Each set's row and blocks against a full fast-engine run of that set."""
    periods = periods_per_year(interval)
    bars = len(frame)
    edges = (np.arange(result.block_sum.shape[1] + 1) * (bars - 1)) // result.block_sum.shape[1]
    assert result.bars == bars
    assert list(result.figures.columns) == list(FIGURES)
    assert list(result.figures.index) == result.slugs
    assert result.block_count.dtype == np.int64 and result.block_sum.dtype == np.float64
    for i, params in enumerate(result.params):
        run = run_fast_backtest(frame, result.strategy, params, interval=interval, **broker)
        assert run.slug == result.slugs[i]
        for name in FIGURES:
            expected = run.metrics[name]
            got = float(result.figures[name].iloc[i])
            if expected is None:
                assert math.isnan(got), (run.slug, name, got)
            elif name in EXACT_FIGURES:
                assert got == expected, (run.slug, name, got, expected)
            else:
                tolerance = figure_tolerance(name, expected, periods)
                assert abs(got - expected) <= tolerance, (run.slug, name, got, expected)
        returns = run.equity.pct_change().to_numpy()[1:]
        for b in range(len(edges) - 1):
            block = returns[edges[b] : edges[b + 1]]
            assert result.block_count[i, b] == block.size
            scale = 1e-12 * (math.fsum(np.abs(block)) + 1e-300)
            assert abs(result.block_sum[i, b] - math.fsum(block)) <= scale
            squares = block * block
            assert abs(result.block_sumsq[i, b] - math.fsum(squares)) <= 1e-12 * math.fsum(squares)


@st.composite
def _grid(draw: st.DrawFn, name: str) -> list[Any]:
    """A handful of distinct sets, sharing periods so the indicator rows are shared."""
    spec = get_strategy(name)
    sets = draw(st.lists(strategy_params(name), min_size=1, max_size=6))
    models = {spec.slug(p): spec.parse_params(p) for p in sets}
    return list(models.values())


@pytest.mark.parametrize("name", SUPPORTED)
@settings(PROFILE, max_examples=25)
@given(data=st.data())
def test_sweep_figures_equal_the_fast_engines_metrics(name: str, data: st.DataObject) -> None:
    sets = data.draw(_grid(name), label="sets")
    spec = get_strategy(name)
    warmup = max(spec.warmup(m) for m in sets)
    frame = data.draw(candle_series(min_size=warmup + 8, max_size=warmup + 300), label="candles")
    broker = data.draw(broker_settings(), label="broker")
    result = run_sweep(frame, name, sets, interval="1h", n_blocks=N_BLOCKS, **broker)
    assert_sweep_matches_fast_engine(frame, result, "1h", broker)


def test_sweep_figures_hold_on_a_year_of_minutes() -> None:
    """A year of 1m candles: many tiles, long blocks, the figure tolerance at full scale."""
    frame = make_candles(525_600, seed=11, interval="1m")
    sets = Rsi().expand_grid({"period": [6, 14], "oversold": [25, 35], "overbought": [70]})
    result = run_sweep(frame, "rsi", sets, interval="1m")
    assert_sweep_matches_fast_engine(frame, result, "1m", {})
    assert (result.figures["trade_count"] > 100).all()


def test_tiles_do_not_change_the_figures() -> None:
    """The level kernel walks bars tile by tile, a set's state parked in between (orders
    pending across a tile edge, positions held through it): any tile size, same numbers."""
    frame = make_candles(3000, seed=3)
    close = frame["close"].to_numpy()
    prices = [frame[c].to_numpy() for c in ("open", "high", "low")]
    table = np.stack([rsi_nb(close, 7), rsi_nb(close, 14)])
    n_sets = 6
    args = (
        table,
        close[None, :],
        np.array([0, 0, 0, 1, 1, 1]),
        np.zeros(n_sets, dtype=np.int64),
        np.array([20.0, 30.0, 40.0, 20.0, 30.0, 40.0]),
        np.array([70.0, 60.0, 65.0, 80.0, 70.0, 55.0]),
        np.array([7, 7, 7, 14, 14, 14]),
        False,
        (np.arange(9) * 2999) // 8,
        10_000.0,
        0.001,
        0.0,
        0.95,
    )
    lanes = np.arange(n_sets).reshape(2, 3)
    reference = level_sweep_nb(*prices, close, *args, lanes, 8192)
    for tile in (1, 7, 500):
        for lanes_ in (lanes, np.arange(n_sets).reshape(1, n_sets)):
            got = level_sweep_nb(*prices, close, *args, lanes_, tile)
            for a, b in zip(got, reference, strict=True):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 10, 1000])
def test_lanes_deal_every_set_once_and_pair_neighbours_across_lanes(count: int) -> None:
    """The snake deal (0, 1, 1, 0, …): every set in exactly one lane, padding only at a lane's
    end (the kernel stops a lane at its first −1), lanes at most one set apart, and each lane's
    mean position in the sort the same to within one (round-robin gave lane 1 the later,
    longer-holding neighbour of every pair)."""
    lanes = _lanes(count)
    dealt = lanes[lanes >= 0]
    assert sorted(dealt.tolist()) == list(range(count))
    for row in lanes:
        real = row[row >= 0]
        assert (row[: real.size] >= 0).all(), "a −1 before the end of a lane"
    sizes = (lanes >= 0).sum(axis=1)
    assert sizes.max() - sizes.min() <= 1
    if lanes.shape[0] == 2 and count % 4 == 0:
        means = [row[row >= 0].mean() for row in lanes]
        assert abs(means[0] - means[1]) < 1e-9


def _gapped_grid_frame() -> pd.DataFrame:
    frame = make_series(40, 0, vol=0.001, flat_share=0.0, shocks=0, tick=0.0, time_gaps=False)
    factor = np.where(np.arange(40) >= 1, 10.0, 1.0)
    for column in ("open", "high", "low", "close"):
        frame[column] = frame[column].to_numpy() * factor
    opens = frame["open"].to_numpy().copy()
    opens[2] *= 3.0
    frame["open"] = opens
    frame["high"] = np.maximum(frame["high"].to_numpy(), opens)
    return frame


def test_a_ruined_grid_takes_its_figures_from_the_full_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A grid that went short and lost more than the account (see the parity tests): its
    equity turns negative, so its row comes from compute_metrics itself — every figure
    equal, the healthy set beside it still streamed."""
    frame = _gapped_grid_frame()
    sets = [
        {"levels": 2, "spacing_pct": 1.0, "order_size": 0.25},
        {"levels": 1, "spacing_pct": 30.0},
    ]
    with caplog.at_level(logging.WARNING, logger="cryptota_core.backtest.sweep"):
        result = run_sweep(frame, "grid", sets, interval="1h", n_blocks=2)
    assert "grid-l2-s1-q0.25: equity reached" in caplog.text
    run = run_fast_backtest(frame, "grid", sets[0], interval="1h")
    assert run.equity.min() < 0
    for name in FIGURES:
        expected = run.metrics[name]
        got = float(result.figures[name].iloc[0])
        assert (math.isnan(got) and expected is None) or got == expected, name
    assert_sweep_matches_fast_engine(frame, result, "1h", {})


# ------------------------------------------------------------------------------- the result
def _small_sweep() -> SweepResult:
    sets = Rsi().expand_grid({"period": [5, 14], "oversold": [20, 30, 45], "overbought": [55, 70]})
    return run_sweep(make_candles(1500, seed=9), "rsi", sets, interval="1h")


def test_sweep_result_describes_its_window_and_sets() -> None:
    frame = make_candles(1500, seed=9)
    result = _small_sweep()
    assert (result.strategy, result.interval, result.bars) == ("rsi", "1h", 1500)
    assert result.candle_start == frame.index[0]
    assert result.candle_end == frame.index[-1] + pd.Timedelta(hours=1)
    assert result.slugs[0] == "rsi-p5-os20-ob55" and len(result.params) == 12
    assert result.block_sum.shape == result.block_sumsq.shape == result.block_count.shape
    assert result.block_count.shape == (12, 16)
    assert (result.block_count.sum(axis=1) == 1499).all()
    assert result.block_count.max() - result.block_count.min() <= 1


def test_rank_orders_by_the_objective_best_first() -> None:
    result = _small_sweep()
    figures = result.figures
    for objective, column in OBJECTIVES.items():
        ranked = result.rank(objective, top=5)
        values = figures.loc[ranked, column].to_numpy()
        defined = values[~np.isnan(values)]
        assert (np.diff(defined) <= 0).all(), objective
        best = figures[column].max()
        if not math.isnan(best):
            assert figures.loc[ranked[0], column] == best
    assert result.rank("sharpe", top=100) == result.rank("sharpe_ratio", top=12)


def test_rank_puts_undefined_values_last() -> None:
    result = _small_sweep()
    never_exits = result.figures["sqn"].isna()
    assert never_exits.any() and (~never_exits).any()
    ranked = result.rank("sqn", top=len(result.slugs))
    tail = ranked[-int(never_exits.sum()) :]
    assert set(tail) == set(result.figures.index[never_exits])


@pytest.mark.parametrize(
    ("objective", "top", "message"),
    [
        ("profit", 3, "cannot rank a sweep by 'profit'; use one of sharpe_ratio, sharpe"),
        ("sharpe", 0, "top=0: ask for at least 1 parameter set"),
    ],
)
def test_rank_rejects_what_it_cannot_do(objective: str, top: int, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        _small_sweep().rank(objective, top)


# ------------------------------------------------------------------------------------ input
@pytest.mark.parametrize(
    ("strategy", "sets", "candles", "kwargs", "message"),
    [
        ("rsi", [], 500, {}, "an empty grid for rsi: pass a list of parameter sets"),
        (
            "grid",
            [{"period": 14}],
            500,
            {},
            "unknown parameter 'period' for grid; valid parameters: levels",
        ),
        (
            "rsi_ma",
            [Rsi().parse_params({})],
            500,
            {},
            "parameters of type RsiParams do not belong to strategy rsi_ma",
        ),
        (
            "rsi",
            [{"period": 14}, {"period": 14}],
            500,
            {},
            "parameter set rsi-p14-os30-ob70 appears twice in the grid; pass it once",
        ),
        (
            "rsi",
            [{"period": 14}],
            10,
            {},
            "10 candles give 9 returns, too few for 16 blocks; load a longer window",
        ),
        (
            "rsi_ma",
            [{"ma_period": 20}, {"ma_period": 600}],
            500,
            {},
            r"rsi_ma-p14-os30-ob70-ma600 needs at least 601 candles \(warm-up 599",
        ),
        ("rsi", [{}], 500, {"n_blocks": 0}, "n_blocks=0: use a whole number of blocks"),
        ("rsi", [{}], 500, {"commission": -1.0}, "invalid --commission -1.0"),
    ],
)
def test_bad_input_is_one_clear_line(
    strategy: str, sets: list[Any], candles: int, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as error:
        run_sweep(make_candles(candles), strategy, sets, interval="1h", **kwargs)
    assert "\n" not in str(error.value)


def test_a_user_strategy_is_swept_set_by_set_on_backtrader() -> None:
    """A strategy with no kernel still sweeps, with the same figures, from backtrader runs: a
    user strategy that is RSI under another name gives the built-in's figures and blocks."""

    class UserRsi(Rsi):
        name = "user_rsi"

    candles = make_candles(500)
    sets = [{"period": 7, "oversold": 25, "overbought": 75}, {"period": 14}]
    user = run_sweep(candles, UserRsi(), sets, interval="1h")
    builtin = run_sweep(candles, "rsi", sets, interval="1h")
    assert user.slugs == [s.replace("rsi", "user_rsi", 1) for s in builtin.slugs]
    for name in EXACT_FIGURES:
        np.testing.assert_array_equal(
            user.figures[name].to_numpy(), builtin.figures[name].to_numpy()
        )
    np.testing.assert_allclose(user.block_sum, builtin.block_sum, rtol=1e-12, atol=1e-15)
