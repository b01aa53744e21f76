"""BinanceSource against the local Binance-compatible exchange: paging, exact data, open candles,
outages, every fault kind, rate limits, bad input, µs times, concurrency and secrets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cryptota_core.binance.ratelimit import LocalWeightLimiter
from cryptota_core.binance.rest import BinanceRest, request_weight
from cryptota_core.errors import ConfigError, InvalidInputError, SourceUnavailableError
from cryptota_core.market.frame import validate_candles
from cryptota_core.market.sources.base import CandleSource
from cryptota_core.market.sources.binance import BinanceSource
from cryptota_core.market.sources.synthetic import generate_candles
from cryptota_core.settings import load_settings
from tests.core.market.archive_fixture import serve_archive
from tests.exchange.server import TEST_API_KEY, TEST_API_SECRET, LocalExchange

NOW = pd.Timestamp("2024-02-01T00:00:00Z")
KLINES = "/api/v3/klines"


def ts(value: str) -> pd.Timestamp:
    return pd.Timestamp(value, tz="UTC")


@pytest.fixture
def exchange() -> Iterator[LocalExchange]:
    with LocalExchange(("BTCUSDT", "ETHUSDT", "SOLUSDT"), now=NOW) as running:
        yield running


def source(exchange: LocalExchange, **options: Any) -> BinanceSource:
    """A source with test-sized backoff, so retries cost milliseconds."""
    settings: dict[str, Any] = {"backoff_base": 0.01, "backoff_cap": 0.05, "timeout": 5.0}
    settings.update(options)
    return BinanceSource(exchange.url, **settings)


def expected(symbol: str, interval: str, start: str, end: str, exchange: LocalExchange) -> Any:
    return generate_candles(symbol, interval, ts(start), ts(end), exchange.seed, now=exchange.now)


def klines_requests(exchange: LocalExchange) -> list[Any]:
    return [r for r in exchange.requests if r.path == KLINES]


def test_satisfies_the_candle_source_protocol(exchange: LocalExchange) -> None:
    binance = source(exchange)
    assert isinstance(binance, CandleSource)
    assert binance.exchange == "binance"


def test_pages_three_days_of_1m_in_five_requests_exactly(exchange: LocalExchange) -> None:
    frame = source(exchange).fetch("BTCUSDT", "1m", ts("2024-01-01"), ts("2024-01-04"))

    pd.testing.assert_frame_equal(
        frame, expected("BTCUSDT", "1m", "2024-01-01", "2024-01-04", exchange)
    )
    assert len(frame) == 4320
    pages = klines_requests(exchange)
    assert len(pages) == 5
    start_ms = ts("2024-01-01").value // 1_000_000
    assert [int(r.params["startTime"]) for r in pages] == [
        start_ms + i * 1000 * 60_000 for i in range(5)
    ]
    assert {r.params["limit"] for r in pages} == {"1000"}
    assert [r.rows for r in pages] == [1000, 1000, 1000, 1000, 320]
    assert [r.path for r in exchange.requests[:2]] == ["/api/v3/exchangeInfo", "/api/v3/time"]


def test_other_intervals_are_exact_too(exchange: LocalExchange) -> None:
    frame = source(exchange).fetch("ETHUSDT", "1h", ts("2024-01-01"), ts("2024-01-31"))
    pd.testing.assert_frame_equal(
        frame, expected("ETHUSDT", "1h", "2024-01-01", "2024-01-31", exchange)
    )
    assert len(klines_requests(exchange)) == 1


def test_exchange_info_is_fetched_once_per_instance(exchange: LocalExchange) -> None:
    binance = source(exchange)
    binance.fetch("BTCUSDT", "1h", ts("2024-01-01"), ts("2024-01-02"))
    binance.fetch("BTCUSDT", "1h", ts("2024-01-02"), ts("2024-01-03"))
    assert exchange.count("/api/v3/exchangeInfo") == 1
    assert exchange.count("/api/v3/time") == 2, "the clock is read once per fetch"


def test_open_candle_is_not_returned(exchange: LocalExchange) -> None:
    exchange.now = "2024-01-03T12:30:30Z"
    frame = source(exchange).fetch("BTCUSDT", "1m", ts("2024-01-03T12:00"), ts("2024-01-03T13:00"))

    assert frame.index[-1] == ts("2024-01-03T12:29")
    assert len(frame) == 30
    assert klines_requests(exchange)[0].rows == 31, "the exchange did send the open 12:30 candle"
    pd.testing.assert_frame_equal(
        frame, expected("BTCUSDT", "1m", "2024-01-03T12:00", "2024-01-03T13:00", exchange)
    )
    hourly = source(exchange).fetch("BTCUSDT", "1h", ts("2024-01-03"), ts("2024-01-04"))
    assert hourly.index[-1] == ts("2024-01-03T11:00")


def test_outage_stays_a_gap(exchange: LocalExchange) -> None:
    # An outage across the first page boundary (minute 1000 of the window).
    outage = (ts("2024-01-01T16:00"), ts("2024-01-01T17:30"))
    exchange.add_outage("BTCUSDT", *outage)
    frame = source(exchange).fetch("BTCUSDT", "1m", ts("2024-01-01"), ts("2024-01-03"))

    full = expected("BTCUSDT", "1m", "2024-01-01", "2024-01-03", exchange)
    kept = full[(full.index < outage[0]) | (full.index >= outage[1])]
    pd.testing.assert_frame_equal(frame, kept)
    assert len(frame) == 2880 - 90
    report = validate_candles(frame, "1m", start=ts("2024-01-01"), end=ts("2024-01-03"))
    assert report.gaps == [(outage[0], outage[1] - pd.Timedelta(minutes=1))]


@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
def test_5xx_burst_then_success(exchange: LocalExchange, status: str) -> None:
    exchange.faults.add(KLINES, status, times=3)
    frame = source(exchange).fetch("BTCUSDT", "1m", ts("2024-01-01"), ts("2024-01-02"))
    pd.testing.assert_frame_equal(
        frame, expected("BTCUSDT", "1m", "2024-01-01", "2024-01-02", exchange)
    )
    assert [r.status for r in klines_requests(exchange)] == [int(status)] * 3 + [200, 200]


def test_timeouts_then_success(exchange: LocalExchange) -> None:
    exchange.faults.add(KLINES, "timeout", times=2, delay=1.0)
    frame = source(exchange, timeout=0.3).fetch("ETHUSDT", "1h", ts("2024-01-01"), ts("2024-01-08"))
    pd.testing.assert_frame_equal(
        frame, expected("ETHUSDT", "1h", "2024-01-01", "2024-01-08", exchange)
    )


@pytest.mark.parametrize("kind", ["truncated", "html", "incomplete", "reset"])
def test_garbage_and_broken_answers_then_success(exchange: LocalExchange, kind: str) -> None:
    exchange.faults.add(KLINES, kind, times=2)
    frame = source(exchange).fetch("BTCUSDT", "1m", ts("2024-01-01"), ts("2024-01-02"))
    pd.testing.assert_frame_equal(
        frame, expected("BTCUSDT", "1m", "2024-01-01", "2024-01-02", exchange)
    )
    assert [r.fault for r in klines_requests(exchange)][:3] == [kind, kind, None]


def test_persistent_5xx_raises_source_unavailable(exchange: LocalExchange) -> None:
    exchange.faults.add(KLINES, "503", times=None)
    with pytest.raises(SourceUnavailableError) as failure:
        source(exchange, max_retries=3).fetch("BTCUSDT", "1m", ts("2024-01-01"), ts("2024-01-02"))
    message = str(failure.value)
    assert "\n" not in message
    assert "failed 4 times" in message and "HTTP 503" in message
    assert "BINANCE_BASE_URL" in message
    assert len(klines_requests(exchange)) == 4, "max_retries bounds the attempts"


def test_persistent_timeouts_raise_source_unavailable(exchange: LocalExchange) -> None:
    exchange.faults.add(KLINES, "timeout", times=None, delay=0.6)
    with pytest.raises(SourceUnavailableError, match=r"failed 2 times \(last: no answer within"):
        source(exchange, timeout=0.2, max_retries=1).fetch(
            "BTCUSDT", "1h", ts("2024-01-01"), ts("2024-01-02")
        )


def gap_after(exchange: LocalExchange, status: int) -> float:
    """Seconds between the first answer with ``status`` and the request that followed it."""
    records = exchange.requests
    index = next(i for i, r in enumerate(records) if r.status == status)
    return records[index + 1].time - records[index].time


def test_429_retry_after_is_honoured(exchange: LocalExchange) -> None:
    exchange.faults.add(KLINES, "429", retry_after=1)
    frame = source(exchange).fetch("BTCUSDT", "1h", ts("2024-01-01"), ts("2024-01-02"))
    assert len(frame) == 24
    assert gap_after(exchange, 429) >= 1.0
    assert exchange.count(status=418) == 0, "waiting out Retry-After never earns a ban"


def test_418_shorter_than_max_ban_wait_is_waited_out(exchange: LocalExchange) -> None:
    exchange.faults.add(KLINES, "418", retry_after=1)
    frame = source(exchange, max_ban_wait=5).fetch(
        "BTCUSDT", "1h", ts("2024-01-01"), ts("2024-01-02")
    )
    assert len(frame) == 24
    assert gap_after(exchange, 418) >= 1.0
    assert exchange.count(status=418) == 1


def test_418_longer_than_max_ban_wait_fails_clearly(exchange: LocalExchange) -> None:
    exchange.faults.add(KLINES, "418", retry_after=120)
    with pytest.raises(SourceUnavailableError) as failure:
        source(exchange, max_ban_wait=2).fetch("BTCUSDT", "1h", ts("2024-01-01"), ts("2024-01-02"))
    message = str(failure.value)
    assert "banned this IP for 120 s" in message and "HTTP 418" in message
    assert "\n" not in message
    assert len(klines_requests(exchange)) == 1, "no request while banned"


def test_used_weight_header_throttles_before_the_server_refuses() -> None:
    # Another client on this IP already spent 30 of 60 in this window; we cannot see it except
    # through X-MBX-USED-WEIGHT-1M. Without honouring the header we would exceed 60 (429).
    with LocalExchange(now=NOW, weight_limit=60, window_seconds=2) as exchange:
        limiter = LocalWeightLimiter(60, headroom=0.8, window_seconds=2)
        time.sleep(2 - time.time() % 2 + 0.05)  # start at the beginning of a window
        exchange.charge(30)
        began = time.time()
        frame = source(exchange, rate_limiter=limiter, page_limit=100).fetch(
            "BTCUSDT", "1m", ts("2024-01-01"), ts("2024-01-01T16:40")
        )
        assert len(frame) == 1000
        assert exchange.count(status=429) == 0
        assert max(exchange.weight_by_window().values()) <= 60
        assert time.time() - began >= 1.5, "waited for the next window"


def test_invalid_symbol_fails_at_once_without_retries(exchange: LocalExchange) -> None:
    with pytest.raises(InvalidInputError) as failure:
        source(exchange).fetch("BTCUSDX", "1m", ts("2024-01-01"), ts("2024-01-02"))
    assert str(failure.value) == (
        "Binance does not list symbol 'BTCUSDX' (code -1121); check the symbol"
    )
    assert [r.path for r in exchange.requests] == ["/api/v3/exchangeInfo"]


def test_symbol_not_trading_fails_at_once(exchange: LocalExchange) -> None:
    exchange.set_status("ETHUSDT", "BREAK")
    with pytest.raises(InvalidInputError, match="status BREAK") as failure:
        source(exchange).fetch("ETHUSDT", "1m", ts("2024-01-01"), ts("2024-01-02"))
    assert "\n" not in str(failure.value)
    assert exchange.count() == 1


def test_malformed_symbol_and_interval_fail_before_any_request(exchange: LocalExchange) -> None:
    with pytest.raises(InvalidInputError, match="did you mean '1h'"):
        source(exchange).fetch("BTCUSDT", "1hr", ts("2024-01-01"), ts("2024-01-02"))
    with pytest.raises(InvalidInputError, match="invalid symbol"):
        source(exchange).fetch("BTC/USDT", "1m", ts("2024-01-01"), ts("2024-01-02"))
    assert exchange.count() == 0


def test_interval_the_exchange_rejects_fails_at_once() -> None:
    with LocalExchange(now=NOW, intervals=("1m",)) as exchange:
        with pytest.raises(InvalidInputError) as failure:
            source(exchange).fetch("BTCUSDT", "1h", ts("2024-01-01"), ts("2024-01-02"))
        message = str(failure.value)
        assert "interval '1h' (code -1120" in message and "\n" not in message
        assert len(klines_requests(exchange)) == 1


def test_microsecond_time_unit_is_normalised(exchange: LocalExchange) -> None:
    frame = source(exchange, time_unit="MICROSECOND").fetch(
        "BTCUSDT", "1m", ts("2024-01-01"), ts("2024-01-02")
    )
    pd.testing.assert_frame_equal(
        frame, expected("BTCUSDT", "1m", "2024-01-01", "2024-01-02", exchange)
    )
    pages = klines_requests(exchange)
    assert {r.time_unit for r in exchange.requests} == {"MICROSECOND"}
    assert int(pages[0].params["startTime"]) == ts("2024-01-01").value // 1_000


def test_fetch_many_runs_symbols_concurrently(exchange: LocalExchange) -> None:
    # A slow first BTC page: the other symbols are served meanwhile.
    exchange.faults.add(KLINES, "timeout", symbol="BTCUSDT", delay=0.5)
    binance = source(exchange, max_concurrency=3)
    frames = asyncio.run(
        binance.fetch_many(
            ["BTCUSDT", "ETHUSDT", "SOLUSDT"], "1m", ts("2024-01-01"), ts("2024-01-02")
        )
    )
    assert list(frames) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    for symbol, frame in frames.items():
        pd.testing.assert_frame_equal(
            frame, expected(symbol, "1m", "2024-01-01", "2024-01-02", exchange)
        )
    slow = next(r for r in klines_requests(exchange) if r.fault == "timeout")
    overlapping = [
        r
        for r in klines_requests(exchange)
        if r.params["symbol"] != "BTCUSDT" and slow.time < r.time < slow.time + 0.5
    ]
    assert overlapping, "other symbols were fetched while BTC's page was slow"


def test_fetch_many_is_all_or_nothing(exchange: LocalExchange) -> None:
    with pytest.raises(InvalidInputError, match="BTCUSDX"):
        asyncio.run(
            source(exchange).fetch_many("BTCUSDT,BTCUSDX", "1m", ts("2024-01-01"), ts("2024-01-05"))
        )


def test_request_weights_match_what_the_exchange_charges(exchange: LocalExchange) -> None:
    limiter = LocalWeightLimiter(window_seconds=3600)
    rest = BinanceRest(
        exchange.url, api_key=TEST_API_KEY, api_secret=TEST_API_SECRET, rate_limiter=limiter
    )
    calls: list[tuple[str, dict[str, Any], bool]] = [
        ("ping", {}, False),
        ("time", {}, False),
        ("exchangeInfo", {"symbol": "BTCUSDT"}, False),
        ("klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1000}, False),
        ("depth", {"symbol": "BTCUSDT", "limit": 100}, False),
        ("depth", {"symbol": "BTCUSDT", "limit": 101}, False),
        ("depth", {"symbol": "BTCUSDT", "limit": 1000}, False),
        ("depth", {"symbol": "BTCUSDT", "limit": 5000}, False),
        ("ticker/price", {"symbol": "BTCUSDT"}, False),
        ("ticker/price", {}, False),
        ("account", {}, True),
    ]
    for path, params, signed in calls:
        rest.call(path, params, signed=signed)
    charged = [r.weight for r in exchange.requests]
    assert charged == [request_weight(path, params) for path, params, _ in calls]
    assert limiter.used() == sum(charged)


def test_base_url_must_be_scheme_and_host() -> None:
    with pytest.raises(ConfigError, match="scheme and host only"):
        BinanceSource("https://api.binance.com/api/v3")
    with pytest.raises(ConfigError, match="not an http"):
        BinanceSource("api.binance.com")
    assert BinanceSource("https://testnet.binance.vision/").rest.base_url == (
        "https://testnet.binance.vision"
    )


def test_a_server_that_is_not_binance_is_a_config_error(tmp_path: Path) -> None:
    with (
        serve_archive(tmp_path) as not_binance,
        pytest.raises(ConfigError, match="does not look like a Binance spot API"),
    ):
        BinanceSource(not_binance.url).fetch("BTCUSDT", "1m", ts("2024-01-01"), ts("2024-01-02"))


def test_from_settings_reads_binance_variables(
    exchange: LocalExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINANCE_BASE_URL", exchange.url)
    binance = BinanceSource.from_settings(load_settings(), backoff_base=0.01)
    assert binance.rest.base_url == exchange.url
    assert not binance.rest.has_credentials
    assert len(binance.fetch("BTCUSDT", "1d", ts("2024-01-01"), ts("2024-01-11"))) == 10


def test_secrets_never_reach_logs_errors_or_repr(
    exchange: LocalExchange, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    binance = source(exchange, api_key=TEST_API_KEY, api_secret=TEST_API_SECRET, max_retries=2)
    exchange.faults.add(KLINES, "503", times=2)
    binance.fetch("BTCUSDT", "1m", ts("2024-01-01"), ts("2024-01-02"))
    binance.rest.call("account", signed=True)
    errors: list[Exception] = []
    exchange.faults.add(KLINES, "502", times=None)
    for symbol in ("BTCUSDX", "BTCUSDT"):
        try:
            binance.fetch(symbol, "1m", ts("2024-01-01"), ts("2024-01-02"))
        except (InvalidInputError, SourceUnavailableError) as e:
            errors.append(e)
    wrong = BinanceRest(exchange.url, api_key=TEST_API_KEY, api_secret="0" * 64)
    try:
        wrong.call("account", signed=True)
    except ConfigError as e:
        errors.append(e)
    assert len(errors) == 3

    texts = [repr(binance), repr(binance.rest), repr(wrong), *map(str, errors)]
    for record in caplog.records:
        texts += [record.getMessage(), str(record.args), record.exc_text or "", str(record.msg)]
    assert any("retrying" in t for t in texts), "the log did capture the retries"
    assert any("urllib3" in r.name for r in caplog.records), "HTTP-level debug logs were captured"
    for secret in (TEST_API_KEY, TEST_API_SECRET):
        leaks = [t for t in texts if secret in t]
        assert not leaks
