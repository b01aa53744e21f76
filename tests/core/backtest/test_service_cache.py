"""A repeated backtest is served from Redis; new candles for the symbol invalidate it."""

from __future__ import annotations

import pandas as pd
import pytest
import redis

from cryptota_core.app.backtests import backtest
from cryptota_core.app.candles import candles_from_store
from cryptota_core.app.ingest import ingest_series
from cryptota_core.backtest.cache import BacktestCache
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.storage.candle_store import CandleStore

START = pd.Timestamp("2024-01-01", tz="UTC")
END = pd.Timestamp("2024-03-01", tz="UTC")
RSI = {"period": 14, "oversold": 30, "overbought": 70}


@pytest.fixture
def store(postgres_url: str) -> CandleStore:
    store = CandleStore.from_url(postgres_url)
    ingest_series(store, SyntheticSource(seed=5), "BTCUSDT", "1h", START, END)
    ingest_series(store, SyntheticSource(seed=5), "ETHUSDT", "1h", START, END)
    return store


def test_second_identical_backtest_is_a_cache_hit(store: CandleStore, redis_url: str) -> None:
    cache = BacktestCache.from_url(redis_url, ttl_seconds=3600)
    candles = candles_from_store(store, "BTCUSDT", "1h", START, END)
    first = backtest(candles, "rsi", RSI, cache=cache)
    assert (cache.hits, cache.misses) == (0, 1)
    second = backtest(candles, "rsi", RSI, cache=cache)
    assert (cache.hits, cache.misses) == (1, 1)
    pd.testing.assert_series_equal(first.equity, second.equity)
    pd.testing.assert_frame_equal(first.trades, second.trades)
    assert first.metrics == second.metrics
    # A different parameter set or broker setting is a different run.
    backtest(candles, "rsi", {**RSI, "oversold": 25}, cache=cache)
    backtest(candles, "rsi", RSI, cache=cache, commission=0.0005)
    assert (cache.hits, cache.misses) == (1, 3)


def test_new_candles_for_the_symbol_invalidate_its_entries(
    store: CandleStore, redis_url: str
) -> None:
    cache = BacktestCache.from_url(redis_url, ttl_seconds=3600)
    client = redis.Redis.from_url(redis_url)
    btc = candles_from_store(store, "BTCUSDT", "1h", START, END)
    eth = candles_from_store(store, "ETHUSDT", "1h", START, END)
    backtest(btc, "rsi", RSI, cache=cache)
    backtest(eth, "rsi", RSI, cache=cache)
    assert len(list(client.scan_iter(match="cryptota:bt:synthetic:BTCUSDT:*"))) == 1

    # Re-ingesting identical candles writes nothing and keeps the entry.
    ingest_series(store, SyntheticSource(seed=5), "BTCUSDT", "1h", START, END, cache=cache)
    assert len(list(client.scan_iter(match="cryptota:bt:synthetic:BTCUSDT:*"))) == 1

    # Changed candles (another seed) invalidate BTCUSDT's entries and only those.
    ingest_series(store, SyntheticSource(seed=6), "BTCUSDT", "1h", START, END, cache=cache)
    assert list(client.scan_iter(match="cryptota:bt:synthetic:BTCUSDT:*")) == []
    assert len(list(client.scan_iter(match="cryptota:bt:synthetic:ETHUSDT:*"))) == 1
    hits_before = cache.hits
    backtest(candles_from_store(store, "BTCUSDT", "1h", START, END), "rsi", RSI, cache=cache)
    assert cache.hits == hits_before
