"""The research store on every backend: optimisation runs and walk-forward reports replace their
own key, paper orders are placed once per signal, and everything keeps its lineage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptota_core.research.lineage import Lineage
from cryptota_core.research.optimize import optimize
from cryptota_core.research.search import SearchSpec
from cryptota_core.research.signals import latest_orders
from cryptota_core.research.walk_forward import walk_forward
from cryptota_core.storage.research_store import ResearchStore
from tests.core.research.test_optimize import RSI_GRID, candles_from_close
from tests.core.research.test_walk_forward import planted


@pytest.fixture
def store(database_url: str) -> ResearchStore:
    return ResearchStore.from_url(database_url)


LINEAGE = Lineage(
    exchange="synthetic",
    symbol="BTCUSDT",
    candle_fingerprint="abc123",
    code_version="0.1.0",
    run_id="run-1",
)


def test_optimization_is_stored_once_with_lineage(store: ResearchStore) -> None:
    result = optimize(
        planted(2_000), SearchSpec(strategy="rsi", grid=RSI_GRID), interval="1h", top=3, recheck=1
    )
    first = store.save_optimization(result, LINEAGE)
    again = store.save_optimization(result, LINEAGE)
    assert first == again
    rows = store.latest_optimizations("BTCUSDT")
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["best_slug"] == result.best_slug
    assert row["best_params"] == result.best_params
    assert row["candle_fingerprint"] == "abc123" and row["dagster_run_id"] == "run-1"
    assert row["combinations"] == result.combinations
    assert row["statistics"]["dsr"] == pytest.approx(result.statistics["dsr"])
    assert [r["slug"] for r in row["top_results"]] == list(result.top["slug"])
    assert row["top_results"][0]["recheck_reproduced"] is True
    assert row["top_results"][0]["recheck_engine"] == "fast"  # the default engine
    assert row["top_results"][1]["recheck_reproduced"] is None  # not re-checked
    assert row["top_results"][1]["recheck_engine"] is None


def test_latest_optimization_per_strategy(store: ResearchStore) -> None:
    candles = planted(2_000)
    for days in (60, 80):  # two windows: the newer one is "current"
        window = candles.iloc[: days * 24]
        result = optimize(
            window, SearchSpec(strategy="rsi", grid=RSI_GRID), interval="1h", recheck=0
        )
        store.save_optimization(result, LINEAGE)
    rows = store.latest_optimizations()
    assert len(rows) == 1
    assert rows.iloc[0]["bars"] == 80 * 24


def test_walk_forward_report_replaces_its_windows(store: ResearchStore) -> None:
    result = walk_forward(
        planted(3_000), SearchSpec(strategy="rsi", grid=RSI_GRID), interval="1h", windows=3
    )
    key = store.save_walk_forward(result, LINEAGE)
    assert store.save_walk_forward(result, LINEAGE) == key
    windows = store.latest_walk_forward("BTCUSDT", "rsi")
    assert list(windows["window_no"]) == [0, 1, 2]
    assert set(windows["run_key"]) == {key}
    assert list(windows["best_slug"]) == [w.best_slug for w in result.windows]
    metrics = windows.iloc[0]["out_sample_metrics"]
    assert metrics["out_sample_annual_log_return"] == pytest.approx(
        result.windows[0].out_sample_annual_log_return
    )
    assert metrics["total_commission"] == pytest.approx(
        result.windows[0].out_sample_metrics["total_commission"]
    )
    assert store.latest_walk_forward("ETHUSDT", "rsi").empty


def test_latest_signal_becomes_one_paper_order(store: ResearchStore) -> None:
    """After a steady rise (RSI 100, never a buy) a drop on the last candle pushes RSI under the
    oversold line: the strategy buys at the next open, which has not happened — that order is
    the live signal, placed once however often it is evaluated."""
    close = 30_000 + 10.0 * np.arange(300)
    close[-1] = close[-2] * 0.9
    candles = candles_from_close(close)
    params = {"period": 14, "oversold": 30, "overbought": 70}
    orders = latest_orders(
        candles,
        exchange="synthetic",
        symbol="BTCUSDT",
        interval="1h",
        strategy="rsi",
        params=params,
    )
    assert len(orders) == 1
    order = orders[0]
    assert (order.side, order.order_type) == ("buy", "market")
    assert order.signal_time == candles.index[-1]
    assert order.price == candles["close"].iloc[-1]
    assert order.size == pytest.approx(0.95 * 10_000 / candles["close"].iloc[-1], rel=0.2)
    assert store.save_paper_orders(orders, LINEAGE) == 1
    assert store.save_paper_orders(orders, LINEAGE) == 0
    placed = store.paper_orders("BTCUSDT")
    assert len(placed) == 1 and placed.iloc[0]["slug"] == "rsi-p14-os30-ob70"
    # Without a signal on the last candle there is no order.
    calm = candles_from_close(close[:-1])
    assert (
        latest_orders(
            calm,
            exchange="synthetic",
            symbol="BTCUSDT",
            interval="1h",
            strategy="rsi",
            params=params,
        )
        == []
    )
    assert pd.Timestamp(placed.iloc[0]["signal_time"]) == candles.index[-1]
