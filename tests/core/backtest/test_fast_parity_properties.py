"""Property: on any candle series, parameter set and broker settings, the fast engine reports
exactly what the backtrader engine reports — trades, orders, equity and metrics, bit for bit —
for every built-in strategy. Examples are derandomized (see ``parity.PROFILE``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.fast import SUPPORTED, run_fast_backtest
from cryptota_core.strategies import get_strategy
from tests.core.backtest.parity import (
    PROFILE,
    assert_same_result,
    broker_settings,
    candle_series,
    make_series,
    strategy_params,
)

EXAMPLES = 60


def _check(frame: pd.DataFrame, name: str, params: dict[str, Any], broker: dict[str, float]) -> Any:
    oracle = run_backtest(frame, name, params, interval="1h", **broker)
    fast = run_fast_backtest(frame, name, params, interval="1h", **broker)
    assert_same_result(oracle, fast)
    return oracle


@pytest.mark.parametrize("name", SUPPORTED)
@settings(PROFILE, max_examples=EXAMPLES)
@given(data=st.data())
def test_fast_engine_equals_backtrader_on_random_inputs(name: str, data: st.DataObject) -> None:
    params = data.draw(strategy_params(name), label="params")
    # backtrader's indicators raise IndexError on a series no longer than their period, so the
    # oracle only runs where at least one bar can signal and fill (the fast engine has no limit)
    warmup = get_strategy(name).warmup(get_strategy(name).parse_params(params))
    frame = data.draw(candle_series(min_size=warmup + 2, max_size=warmup + 250), label="candles")
    broker = data.draw(broker_settings(), label="broker")
    _check(frame, name, params, broker)


def _gapped_grid_frame(seed: int, second_gap: float) -> pd.DataFrame:
    """Quiet 1h candles whose price jumps 10x from bar 1 on (open and close), and whose bar 2
    opens ``second_gap`` times higher still."""
    frame = make_series(12, seed, vol=0.001, flat_share=0.0, shocks=0, tick=0.0, time_gaps=False)
    factor = np.where(np.arange(12) >= 1, 10.0, 1.0)
    for column in ("open", "high", "low", "close"):
        frame[column] = frame[column].to_numpy() * factor
    opens = frame["open"].to_numpy().copy()
    opens[2] *= second_gap
    frame["open"] = opens
    frame["high"] = np.maximum(frame["high"].to_numpy(), opens)
    return frame


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("levels", [1, 2, 5])
@pytest.mark.parametrize("second_gap", [1.0, 3.0])
def test_grid_parity_through_a_rejected_rebalance(
    seed: int, levels: int, second_gap: float
) -> None:
    """The grid centres on bar 0; bar 1 opens 10x higher, so the rebalancing buy is rejected
    while the sells fill at that open (the grid goes short) and are then cancelled; the close
    re-centres, and the new rebalancing buy first covers the short and then — when bar 2 gaps
    up again — is rejected for the rest: a partial fill followed by a rejection, and a ruined
    account. backtrader's exact sequence must come out of the fast engine."""
    params = {"levels": levels, "spacing_pct": 1.0, "order_size": 0.5 / levels}
    oracle = _check(_gapped_grid_frame(seed, second_gap), "grid", params, {})
    orders = oracle.orders
    assert orders["status"].iloc[0] == "rejected"  # the first rebalancing buy
    assert (oracle.trades["side"] == "short").any()
    if second_gap > 1.0:
        part_filled = orders[(orders["status"] == "rejected") & orders["fill_time"].notna()]
        assert len(part_filled) == 1 and part_filled["type"].iloc[0] == "market"
        assert oracle.equity.min() < 0.0  # ruined: the short lost more than the account
