"""Pipeline backtest runs: parameter sets from grids, the window, idempotent run-and-store."""

from __future__ import annotations

import pandas as pd
import pytest

from cryptota_core.app.backtests import (
    register_param_sets,
    resolve_param_set,
    run_and_store,
    run_many,
)
from cryptota_core.app.ingest import ingest_series
from cryptota_core.backtest.cache import BacktestCache
from cryptota_core.backtest.runs import BacktestWindow, backtest_window, expand_param_grids
from cryptota_core.errors import InvalidInputError, NoDataError
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.settings import load_settings
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.results_store import ResultsStore

START = pd.Timestamp("2024-01-01", tz="UTC")
WINDOW = BacktestWindow("1h", START, START + pd.Timedelta(days=30))


def test_window_is_the_last_full_utc_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOTA_BACKTEST_DAYS", "10")
    settings = load_settings()
    window = backtest_window(
        settings.backtest_interval,
        settings.backtest_days,
        today=pd.Timestamp("2024-03-05T13:45", tz="UTC"),
    )
    assert (window.interval, window.start, window.end) == (
        "1h",
        pd.Timestamp("2024-02-24", tz="UTC"),
        pd.Timestamp("2024-03-05", tz="UTC"),
    )


def test_grids_expand_to_valid_unique_slugs() -> None:
    sets = expand_param_grids({"rsi": {"period": [14], "oversold": [30, 75], "overbought": [70]}})
    assert [p.slug for p in sets] == ["rsi-p14-os30-ob70"]  # oversold 75 >= 70 is skipped
    assert sets[0].params == {"period": 14, "oversold": 30, "overbought": 70}
    with pytest.raises(InvalidInputError, match="did you mean 'oversold'"):
        expand_param_grids({"rsi": {"oversould": [30]}})


def test_run_and_store_is_idempotent_and_traceable(database_url: str) -> None:
    store = CandleStore.from_url(database_url)
    results = ResultsStore.from_url(database_url)
    ingest_series(store, SyntheticSource(seed=2), "BTCUSDT", "1m", START, WINDOW.end)
    sets = expand_param_grids({"rsi": {"period": [14], "oversold": [30], "overbought": [70]}})
    (slug,) = register_param_sets(results, sets)
    param_set = resolve_param_set(results, slug)
    first = run_and_store(
        store, results, symbol="BTCUSDT", param_set=param_set, window=WINDOW, run_id="run-1"
    )
    again = run_and_store(
        store, results, symbol="BTCUSDT", param_set=param_set, window=WINDOW, run_id="run-2"
    )
    assert first.run_key == again.run_key
    assert results.count_runs() == 1
    stored = results.load_backtest(first.run_key)
    assert stored.run_id == "run-2"
    assert stored.candle_fingerprint == first.candles.fingerprint
    assert stored.result.bars == 30 * 24
    board = results.leaderboard(symbol="BTCUSDT")
    assert list(board["slug"]) == [slug]


def test_unknown_slug_and_missing_candles_are_clear(sqlite_url: str) -> None:
    store = CandleStore.from_url(sqlite_url)
    results = ResultsStore.from_url(sqlite_url)
    with pytest.raises(InvalidInputError, match="unknown parameter set 'rsi-p99'"):
        resolve_param_set(results, "rsi-p99")
    sets = expand_param_grids({"rsi": {"period": [14]}})
    register_param_sets(results, sets)
    with pytest.raises(NoDataError, match="cryptota ingest --symbols BTCUSDT"):
        run_and_store(store, results, symbol="BTCUSDT", param_set=sets[0], window=WINDOW)


def test_run_many_reads_each_symbol_once_and_matches_single_runs(sqlite_url: str) -> None:
    store = CandleStore.from_url(sqlite_url)
    results = ResultsStore.from_url(sqlite_url)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        ingest_series(store, SyntheticSource(seed=2), symbol, "1h", START, WINDOW.end)
    sets = expand_param_grids({"rsi": {"period": [7, 14], "oversold": [30], "overbought": [70]}})
    slugs = register_param_sets(results, sets)
    pairs = [(symbol, slug) for symbol in ("BTCUSDT", "ETHUSDT") for slug in slugs]
    many = run_many(store, results, pairs, window=WINDOW, run_id="batch")
    assert [(r.candles.key.symbol, r.result.slug) for r in many if r.candles.key] == pairs
    assert many[0].candles is many[1].candles  # one read for BTCUSDT's two parameter sets
    single = run_and_store(
        store,
        results,
        symbol="ETHUSDT",
        param_set=resolve_param_set(results, slugs[1]),
        window=WINDOW,
    )
    assert single.run_key == many[3].run_key
    pd.testing.assert_series_equal(single.result.equity, many[3].result.equity)
    assert results.count_runs() == 4
    with pytest.raises(InvalidInputError, match="unknown parameter set 'rsi-p99'"):
        run_many(store, results, [("BTCUSDT", "rsi-p99")], window=WINDOW)


@pytest.mark.redis
def test_run_many_says_which_results_the_cache_served(sqlite_url: str, redis_url: str) -> None:
    """Per result, not from the cache's counters: another user of the same cache in between
    (here a lookup of a run that is not cached) changes nothing."""
    store = CandleStore.from_url(sqlite_url)
    results = ResultsStore.from_url(sqlite_url)
    ingest_series(store, SyntheticSource(seed=2), "BTCUSDT", "1h", START, WINDOW.end)
    sets = expand_param_grids({"rsi": {"period": [7, 14], "oversold": [30], "overbought": [70]}})
    slugs = register_param_sets(results, sets)
    cache = BacktestCache.from_url(redis_url)

    first = run_many(store, results, [("BTCUSDT", slugs[0])], window=WINDOW, cache=cache)
    assert [r.cached for r in first] == [False]
    cache.get("cryptota:bt:synthetic:BTCUSDT:not-cached")  # someone else's miss
    both = run_many(store, results, [("BTCUSDT", s) for s in slugs], window=WINDOW, cache=cache)
    assert [r.cached for r in both] == [True, False]
