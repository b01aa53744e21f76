"""The research steps the pipeline calls, on a real store: optimise, walk forward, signal, drift —
each reading stored candles and storing its result with lineage."""

from __future__ import annotations

import pandas as pd
import pytest

from cryptota_core.app.ingest import ingest
from cryptota_core.app.research import (
    drift_symbol,
    optimize_symbol,
    signal_symbol,
    walk_forward_symbol,
)
from cryptota_core.errors import NoDataError
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.research.config import ResearchConfig
from cryptota_core.research.optimize import NoCandidateError
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.research_store import ResearchStore

TODAY = pd.Timestamp("2024-04-01", tz="UTC")
CONFIG = ResearchConfig(
    interval="1h",
    grids={
        "rsi": {"period": [7, 14], "oversold": [20, 30], "overbought": [70, 80]},
        "grid": {"levels": [3, 5], "spacing_pct": [0.5, 1.0], "order_size": [0.05]},
    },
    optimization_days=30,
    walk_forward_days=60,
    top=3,
    recheck=1,
    windows=3,
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[CandleStore, ResearchStore]:
    url = f"sqlite:///{tmp_path_factory.mktemp('research') / 'store.db'}"
    store = CandleStore.from_url(url)
    ingest(store, SyntheticSource(seed=5), ["BTCUSDT"], "1m", TODAY - pd.Timedelta(days=61), TODAY)
    return store, ResearchStore.from_url(url)


def test_optimize_then_signal_then_drift(stores: tuple[CandleStore, ResearchStore]) -> None:
    store, research = stores
    with pytest.raises(NoDataError, match="materialise parameter_optimization first"):
        signal_symbol(store, research, "BTCUSDT", CONFIG, now=TODAY)
    batch = optimize_symbol(store, research, "BTCUSDT", CONFIG, run_id="r1", today=TODAY)
    optimised = batch.stored
    assert batch.skipped == {}
    assert [o.result.strategy for o in optimised] == ["rsi", "grid"]
    assert all(o.result.sweep.bars == 30 * 24 for o in optimised)
    assert all(o.result.rechecks[0].reproduced for o in optimised)
    current = research.latest_optimizations("BTCUSDT")
    assert set(current["strategy"]) == {"rsi", "grid"}
    assert set(current["dagster_run_id"]) == {"r1"}
    assert set(current["candle_fingerprint"]) == {optimised[0].candles.fingerprint}

    orders, placed = signal_symbol(store, research, "BTCUSDT", CONFIG, run_id="r2", now=TODAY)
    assert placed == len(orders)
    assert signal_symbol(store, research, "BTCUSDT", CONFIG, run_id="r3", now=TODAY)[1] == 0
    assert all(o.signal_time == TODAY - pd.Timedelta(hours=1) for o in orders)

    assert drift_symbol(store, research, "BTCUSDT", CONFIG, now=TODAY) == []  # no walk-forward yet
    reports = walk_forward_symbol(store, research, "BTCUSDT", CONFIG, run_id="r4", today=TODAY)
    assert [len(r.result.windows) for r in reports] == [3, 3]
    checks = drift_symbol(store, research, "BTCUSDT", CONFIG, now=TODAY)
    assert {c.strategy for c in checks} == {"rsi", "grid"}
    assert all(c.threshold <= c.expected_sharpe for c in checks)


def test_a_strategy_without_candidates_is_skipped_with_its_reason(
    stores: tuple[CandleStore, ResearchStore],
) -> None:
    """A grid whose sets never make the minimum of trades in the window (RSI below 1 never
    happens) is skipped and named; the other strategy is still optimised and stored. With
    every strategy skipped there is nothing to rank: one error naming each reason."""
    store, research = stores
    dead = {"period": [14], "oversold": [0.5], "overbought": [99.5]}
    config = CONFIG.model_copy(update={"grids": {**CONFIG.grids, "rsi": dead}})
    batch = optimize_symbol(store, research, "BTCUSDT", config, run_id="r9", today=TODAY)
    assert [o.result.strategy for o in batch.stored] == ["grid"]
    assert list(batch.skipped) == ["rsi"]
    assert "made --min-trades 5 closed trades (the most: 0)" in batch.skipped["rsi"]
    only_dead = CONFIG.model_copy(update={"grids": {"rsi": dead}})
    with pytest.raises(NoCandidateError, match="BTCUSDT: every strategy was skipped \\(rsi: "):
        optimize_symbol(store, research, "BTCUSDT", only_dead, today=TODAY)
