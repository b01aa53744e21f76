"""Walk-forward analysis: the splits, no look-ahead, the stitched curve, and a planted edge found
out of sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptota_core.backtest.fast import run_fast_backtest
from cryptota_core.errors import InvalidInputError
from cryptota_core.research.drift import check_drift
from cryptota_core.research.search import SearchSpec
from cryptota_core.research.walk_forward import splits, walk_forward
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
    # Each window is the chosen set's own backtest with its warm-up bars as history.
    first = result.windows[0]
    spec_cut = splits(len(candles), windows=5, in_sample_ratio=3.0, anchored=False)[0]
    warmup = get_strategy("rsi").warmup(get_strategy("rsi").parse_params(first.best_params))
    run = run_fast_backtest(
        candles.iloc[spec_cut.oos_start - warmup : spec_cut.oos_end],
        "rsi",
        first.best_params,
        interval="1h",
    )
    assert run.equity.iloc[-1] / run.equity.iloc[warmup] - 1 == pytest.approx(
        first.out_sample_return, rel=1e-12
    )


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
