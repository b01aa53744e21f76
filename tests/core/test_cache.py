"""The backtest cache against a real redis-server: keys, exact round trip, TTL, SCAN-based
invalidation, the no-op fallback, degrading when Redis dies, and never unpickling."""

from __future__ import annotations

import logging
import math
import pickle
import struct
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from cryptota_core.backtest.cache import (
    FORMAT_VERSION,
    MAGIC,
    STATS_HITS,
    STATS_MISSES,
    BacktestCache,
    NullCache,
    cache_key,
    cached_backtest,
    decode_result,
    encode_result,
    open_cache,
)
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.errors import InvalidInputError
from cryptota_core.settings import load_settings
from tests.core.storage.test_results_store import RSI_PARAMS, make_result
from tests.services import free_port, start_redis

CACHE_LOGGER = "cryptota_core.backtest.cache"


def key_for(symbol: str = "BTCUSDT", exchange: str = "binance", **changes: Any) -> str:
    inputs: dict[str, Any] = {
        "strategy": "rsi",
        "params": RSI_PARAMS,
        "candle_fingerprint": "0123456789abcdef",
        "engine": "backtrader",
        "code_version": "0.1.0",
        "cash": 10_000,
        "commission": 0.001,
        "slippage": 0.0,
        "stake": 0.95,
        "interval": "1h",
        "symbol": symbol,
        "exchange": exchange,
    }
    inputs.update(changes)
    return cache_key(**inputs)


def assert_identical(back: BacktestResult, original: BacktestResult) -> None:
    """Every field equal; frames equal with dtypes, index (name, tz, freq) and exact values."""
    pd.testing.assert_series_equal(back.equity, original.equity, check_exact=True)
    pd.testing.assert_series_equal(back.benchmark, original.benchmark, check_exact=True)
    pd.testing.assert_frame_equal(back.trades, original.trades, check_exact=True)
    pd.testing.assert_frame_equal(back.orders, original.orders, check_exact=True)
    back_index = pd.DatetimeIndex(back.equity.index)
    assert back_index.freq == pd.DatetimeIndex(original.equity.index).freq
    assert str(back_index.tz) == "UTC"
    assert list(back.trades.dtypes) == list(original.trades.dtypes)
    assert list(back.orders.dtypes) == list(original.orders.dtypes)
    for name in ("strategy", "params", "slug", "engine", "interval", "bars", "rejected_orders"):
        assert getattr(back, name) == getattr(original, name), name
    for name in ("cash", "commission", "slippage", "stake"):
        assert getattr(back, name) == getattr(original, name), name
    assert back.start == original.start and back.start.tz == original.start.tz
    assert back.end == original.end and back.end.tz == original.end.tz
    assert back.metrics.keys() == original.metrics.keys()
    for name, value in original.metrics.items():
        # Undefined (NaN, ±inf) comes back as None, the one spelling of it outside the engines.
        expected = value if value is not None and math.isfinite(value) else None
        assert back.metrics[name] == expected, name


@pytest.fixture
def cache(redis_url: str) -> BacktestCache:
    return BacktestCache.from_url(redis_url, ttl_seconds=3_600)


# -- keys -------------------------------------------------------------------------------------


def test_cache_key_is_deterministic_and_covers_every_input() -> None:
    key = key_for()
    assert key.startswith("cryptota:bt:binance:BTCUSDT:")
    assert len(key.rsplit(":", 1)[1]) == 64
    assert key_for() == key
    assert key_for(cash=10_000.0) == key  # 10000 and 10000.0 are the same question
    assert key_for(params=dict(reversed(list(RSI_PARAMS.items())))) == key  # key order
    changes: dict[str, Any] = {
        "strategy": "rsi_ma",
        "params": {**RSI_PARAMS, "period": 15},
        "candle_fingerprint": "fedcba9876543210",
        "engine": "fast",
        "code_version": "0.2.0",
        "cash": 20_000,
        "commission": 0.00075,
        "slippage": 0.001,
        "stake": 0.5,
        "interval": "4h",
        "symbol": "ETHUSDT",
        "exchange": "synthetic",
    }
    for field, value in changes.items():
        assert key_for(**{field: value}) != key, field


@pytest.mark.parametrize(
    ("symbol", "exchange"),
    [("BTC:USDT", "binance"), ("BTC*", "binance"), ("BTCUSDT", "bin ance"), ("", "binance")],
)
def test_cache_key_rejects_names_that_would_break_the_prefix(symbol: str, exchange: str) -> None:
    with pytest.raises(InvalidInputError):
        key_for(symbol=symbol, exchange=exchange)


def test_cache_key_rejects_non_finite_params() -> None:
    with pytest.raises(InvalidInputError, match="finite"):
        key_for(params={"period": math.inf})


# -- round trip -------------------------------------------------------------------------------


def test_miss_then_hit_is_counted(cache: BacktestCache, redis_url: str) -> None:
    key = key_for()
    result = make_result()
    assert cache.get(key) is None
    assert (cache.hits, cache.misses) == (0, 1)
    cache.set(key, result)
    back = cache.get(key)
    assert back is not None
    assert_identical(back, result)
    assert (cache.hits, cache.misses) == (1, 1)
    client = redis.Redis.from_url(redis_url)
    assert int(client.get(STATS_HITS) or 0) == 1
    assert int(client.get(STATS_MISSES) or 0) == 1


@pytest.mark.parametrize(
    "result",
    [
        make_result(metrics={"omega_ratio": math.nan, "tail_ratio": math.inf}),
        make_result(freq="h", with_trades=False),
        make_result(n=2, with_trades=False),
        make_result(n=10_000, interval="1m", seed=7),
    ],
    ids=["nan-metrics", "freq-no-trades", "tiny", "10k"],
)
def test_round_trip_reproduces_the_result_exactly(
    cache: BacktestCache, result: BacktestResult
) -> None:
    assert_identical(decode_result(encode_result(result)), result)
    key = key_for(candle_fingerprint=f"fp{result.bars}")
    cache.set(key, result)
    back = cache.get(key)
    assert back is not None
    assert_identical(back, result)


def test_entries_expire_after_the_configured_ttl(redis_url: str) -> None:
    cache = open_cache(load_settings(redis_url=redis_url, cache_ttl_seconds=123))
    assert isinstance(cache, BacktestCache)
    client = redis.Redis.from_url(redis_url)
    cache.set(key_for(), make_result())
    assert 0 < client.ttl(key_for()) <= 123
    cache.set(key_for(symbol="ETHUSDT"), make_result(), ttl=45)
    assert 0 < client.ttl(key_for(symbol="ETHUSDT")) <= 45


def test_cached_backtest_computes_once(cache: BacktestCache) -> None:
    calls: list[int] = []

    def compute() -> BacktestResult:
        calls.append(1)
        return make_result()

    first, first_hit = cached_backtest(cache, key_for(), compute)
    second, second_hit = cached_backtest(cache, key_for(), compute)
    assert len(calls) == 1
    assert (first_hit, second_hit) == (False, True)
    assert_identical(second, first)
    assert (cache.hits, cache.misses) == (1, 1)


# -- invalidation -----------------------------------------------------------------------------


def test_invalidate_symbol_removes_only_that_symbol_using_scan(
    cache: BacktestCache, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    cache.set(key_for(), make_result())
    # More keys than one SCAN page or one UNLINK batch, as after months of nightly runs.
    btc = [key_for(candle_fingerprint=f"fp{i}") for i in range(1_234)]
    client.mset(dict.fromkeys(btc, b"x"))
    survivors = [
        key_for(symbol="ETHUSDT"),
        key_for(symbol="BTCUSDTX"),  # a symbol that merely starts with BTCUSDT
        key_for(exchange="synthetic"),  # same symbol, other exchange
        "cryptota:bt:stats:hits",
        "unrelated:BTCUSDT",
    ]
    client.mset(dict.fromkeys(survivors, b"1"))
    client.config_resetstat()

    assert cache.invalidate_symbol("binance", "BTCUSDT") == 1 + len(btc)

    assert client.exists(key_for(), *btc) == 0
    assert client.exists(*survivors) == len(survivors)
    stats = client.info("commandstats")
    assert stats["cmdstat_scan"]["calls"] >= 2
    assert "cmdstat_keys" not in stats
    assert cache.invalidate_symbol("binance", "BTCUSDT") == 0


# -- fallback and failure ---------------------------------------------------------------------


def test_no_redis_url_gives_the_null_cache() -> None:
    cache = open_cache(load_settings())
    assert isinstance(cache, NullCache)
    assert not cache.enabled
    calls: list[int] = []

    def compute() -> BacktestResult:
        calls.append(1)
        return make_result()

    cached_backtest(cache, key_for(), compute)
    cached_backtest(cache, key_for(), compute)
    assert len(calls) == 2
    assert (cache.hits, cache.misses) == (0, 2)
    assert cache.invalidate_symbol("binance", "BTCUSDT") == 0


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == CACHE_LOGGER and r.levelno >= logging.WARNING]


def test_redis_dying_mid_run_degrades_to_no_cache_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_redis()  # our own server: stopping it must not disturb the shared one
    try:
        cache = BacktestCache.from_url(server.url, timeout=1.0)
        cache.set(key_for(), make_result())
        assert cache.get(key_for()) is not None
    finally:
        server.stop()
    caplog.set_level(logging.INFO, logger=CACHE_LOGGER)

    calls: list[int] = []

    def compute() -> BacktestResult:
        calls.append(1)
        return make_result()

    for _ in range(3):
        assert cache.get(key_for()) is None
        cache.set(key_for(), make_result())
        assert cache.invalidate_symbol("binance", "BTCUSDT") == 0
        assert_identical(cached_backtest(cache, key_for(), compute)[0], make_result())
    assert len(calls) == 3
    assert not cache.enabled
    assert cache.hits == 1 and cache.misses == 6
    warnings = _warnings(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "continuing without a cache" in warnings[0].getMessage()


def test_unreachable_redis_at_start_warns_once_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=CACHE_LOGGER)
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    cache = open_cache(load_settings(redis_url=url))
    assert isinstance(cache, BacktestCache)
    assert cache.get(key_for()) is None
    assert cache.get(key_for()) is None
    cache.set(key_for(), make_result())
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert "hunter2" not in caplog.text
    assert ":***@127.0.0.1" in warnings[0].getMessage()


# -- no pickle --------------------------------------------------------------------------------


def test_stored_value_is_not_a_pickle(cache: BacktestCache, redis_url: str) -> None:
    cache.set(key_for(), make_result())
    blob = redis.Redis.from_url(redis_url).get(key_for())
    assert isinstance(blob, bytes)
    assert blob.startswith(MAGIC)
    assert blob[:1] != b"\x80"  # pickle protocol 2+ opcode PROTO
    assert blob[:1] not in (b"(", b"c", b"]", b"}", b"I", b"S")  # protocol 0/1 openings


class _Exploit:
    """Unpickling this creates a file: proof that a payload would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_planted_in_the_cache_is_rejected_not_run(
    cache: BacktestCache,
    redis_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    protocol: int,
) -> None:
    caplog.set_level(logging.WARNING, logger=CACHE_LOGGER)
    marker = tmp_path / "pwned"
    redis.Redis.from_url(redis_url).set(key_for(), pickle.dumps(_Exploit(marker), protocol))
    assert cache.get(key_for()) is None
    assert not marker.exists()
    assert (cache.hits, cache.misses) == (0, 1)
    assert "ignoring unreadable cache entry" in caplog.text
    assert cache.enabled  # a bad entry is not a dead Redis


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"CTBT",
        MAGIC + struct.pack(">HI", FORMAT_VERSION + 1, 2) + b"{}",  # a future format version
        MAGIC + struct.pack(">HI", FORMAT_VERSION - 1, 2) + b"{}",  # an older format version
        MAGIC + struct.pack(">HI", FORMAT_VERSION, 2) + b"{}",  # right version, empty header
        MAGIC + struct.pack(">HI", FORMAT_VERSION, 4096) + b"\x00" * 20,  # length past the end
    ],
)
def test_corrupt_entries_are_misses(
    cache: BacktestCache, redis_url: str, caplog: pytest.LogCaptureFixture, blob: bytes
) -> None:
    caplog.set_level(logging.WARNING, logger=CACHE_LOGGER)
    redis.Redis.from_url(redis_url).set(key_for(), blob)
    assert cache.get(key_for()) is None
    assert "ignoring unreadable cache entry" in caplog.text


def test_truncated_entry_is_a_miss(cache: BacktestCache, redis_url: str) -> None:
    blob = encode_result(make_result())
    redis.Redis.from_url(redis_url).set(key_for(), blob[: len(blob) - 100])
    assert cache.get(key_for()) is None


def test_a_key_of_another_type_is_a_miss(
    cache: BacktestCache, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=CACHE_LOGGER)
    redis.Redis.from_url(redis_url).hset(key_for(), "a", "b")
    assert cache.get(key_for()) is None
    assert cache.enabled
