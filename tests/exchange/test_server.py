"""The local exchange speaks Binance's wire format: field types, error JSON, headers, weights,
limits, signed requests and the scripted faults, checked with plain ``requests`` (no client code
of ours), so the client tests elsewhere run against something that behaves like Binance."""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import pytest
import requests

from cryptota_core.market.sources.synthetic import generate_candles
from tests.exchange.server import TEST_API_KEY, TEST_API_SECRET, LocalExchange
from tests.services import free_port

NOW = pd.Timestamp("2024-01-03T12:30:30Z")
NOW_MS = int(NOW.value // 1_000_000)
DECIMAL = re.compile(r"^-?\d+\.\d{8,}$")


@pytest.fixture
def exchange() -> Iterator[LocalExchange]:
    with LocalExchange(("BTCUSDT", "ETHUSDT"), now=NOW) as running:
        yield running


def get(exchange: LocalExchange, route: str, **params: Any) -> requests.Response:
    headers = params.pop("headers", None)
    return requests.get(f"{exchange.url}/api/v3/{route}", params=params, headers=headers, timeout=5)


def assert_binance_error(response: requests.Response, status: int, code: int) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "msg"}
    assert body["code"] == code
    assert isinstance(body["msg"], str) and body["msg"]


def signed_query(params: dict[str, Any], secret: str = TEST_API_SECRET) -> str:
    query = urlencode(params)
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}"


def test_ping_and_time(exchange: LocalExchange) -> None:
    assert get(exchange, "ping").json() == {}
    answer = get(exchange, "time").json()
    assert answer == {"serverTime": NOW_MS}
    assert isinstance(answer["serverTime"], int)


def test_date_header_follows_the_market_clock(exchange: LocalExchange) -> None:
    when = parsedate_to_datetime(get(exchange, "ping").headers["Date"])
    assert pd.Timestamp(when) == NOW.floor("s")


def test_exchange_info_shape(exchange: LocalExchange) -> None:
    info = get(exchange, "exchangeInfo").json()
    assert info["timezone"] == "UTC"
    assert info["serverTime"] == NOW_MS
    weight = next(r for r in info["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT")
    assert weight == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
    }
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    btc = info["symbols"][0]
    assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == ("TRADING", "BTC", "USDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert {"PRICE_FILTER", "LOT_SIZE", "NOTIONAL"} <= set(filters)
    assert DECIMAL.match(filters["PRICE_FILTER"]["tickSize"])
    assert DECIMAL.match(filters["LOT_SIZE"]["stepSize"])
    assert btc["permissionSets"] == [["SPOT"]]


def test_exchange_info_filters_by_symbol_and_rejects_unknown(exchange: LocalExchange) -> None:
    exchange.set_status("ETHUSDT", "BREAK")
    one = get(exchange, "exchangeInfo", symbol="ETHUSDT").json()
    assert [(s["symbol"], s["status"]) for s in one["symbols"]] == [("ETHUSDT", "BREAK")]
    both = get(exchange, "exchangeInfo", symbols='["BTCUSDT","ETHUSDT"]').json()
    assert len(both["symbols"]) == 2
    trading = get(exchange, "exchangeInfo", symbolStatus="TRADING").json()
    assert [s["symbol"] for s in trading["symbols"]] == ["BTCUSDT"]
    unknown = get(exchange, "exchangeInfo", symbol="BTCUSDX")
    assert_binance_error(unknown, 400, -1121)
    assert unknown.json()["msg"] == "Invalid symbol."


def test_klines_rows_have_binance_field_types(exchange: LocalExchange) -> None:
    start = pd.Timestamp("2024-01-02", tz="UTC")
    rows = get(
        exchange,
        "klines",
        symbol="BTCUSDT",
        interval="1m",
        startTime=int(start.value // 1_000_000),
        limit=3,
    ).json()
    assert len(rows) == 3
    for row in rows:
        assert len(row) == 12
        assert isinstance(row[0], int) and isinstance(row[6], int) and isinstance(row[8], int)
        for i in (1, 2, 3, 4, 5, 7, 9, 10):
            assert isinstance(row[i], str) and DECIMAL.match(row[i]), row[i]
        assert row[11] == "0"
        assert row[6] == row[0] + 60_000 - 1
    expected = generate_candles("BTCUSDT", "1m", start, start + pd.Timedelta(minutes=3), 42)
    assert [r[0] for r in rows] == list(pd.DatetimeIndex(expected.index).as_unit("ms").asi8)
    assert [float(r[4]) for r in rows] == list(expected["close"])
    assert [int(r[8]) for r in rows] == list(expected["trades"])
    assert [float(r[7]) for r in rows] == list(expected["quote_volume"]), "exact round trip"


def test_klines_default_limit_is_500_and_max_is_1000(exchange: LocalExchange) -> None:
    start = int(pd.Timestamp("2024-01-01", tz="UTC").value // 1_000_000)
    assert (
        len(get(exchange, "klines", symbol="BTCUSDT", interval="1m", startTime=start).json()) == 500
    )
    full = get(exchange, "klines", symbol="BTCUSDT", interval="1m", startTime=start, limit=1000)
    assert len(full.json()) == 1000
    too_many = get(exchange, "klines", symbol="BTCUSDT", interval="1m", limit=1001)
    assert_binance_error(too_many, 400, -1130)


def test_klines_errors(exchange: LocalExchange) -> None:
    assert_binance_error(get(exchange, "klines", symbol="BTCUSDX", interval="1m"), 400, -1121)
    assert_binance_error(get(exchange, "klines", symbol="BTCUSDT", interval="1x"), 400, -1120)
    assert_binance_error(get(exchange, "klines", interval="1m"), 400, -1102)
    assert_binance_error(
        get(exchange, "klines", symbol="BTCUSDT", interval="1m", startTime=2, endTime=1), 400, -1023
    )
    assert_binance_error(
        get(exchange, "klines", symbol="BTCUSDT", interval="1m", startTime="soon"), 400, -1100
    )


def test_klines_last_candle_is_open_when_the_range_reaches_now(exchange: LocalExchange) -> None:
    rows = get(exchange, "klines", symbol="BTCUSDT", interval="1m", limit=5).json()
    server_time = get(exchange, "time").json()["serverTime"]
    assert rows[-1][0] == NOW.floor("min").value // 1_000_000
    assert rows[-1][6] >= server_time, "the newest candle is still open"
    assert all(r[6] < server_time for r in rows[:-1])
    hourly = get(exchange, "klines", symbol="BTCUSDT", interval="1h", limit=2).json()
    assert hourly[-1][0] == NOW.floor("h").value // 1_000_000
    assert hourly[-1][6] >= server_time


def test_klines_end_time_selects_the_latest_candles(exchange: LocalExchange) -> None:
    end = pd.Timestamp("2024-01-02T10:00:00Z")
    rows = get(
        exchange, "klines", symbol="BTCUSDT", interval="1h", endTime=end.value // 1_000_000, limit=3
    ).json()
    assert [pd.Timestamp(r[0], unit="ms", tz="UTC") for r in rows] == [
        end - pd.Timedelta(hours=2),
        end - pd.Timedelta(hours=1),
        end,
    ]


def test_klines_microsecond_time_unit(exchange: LocalExchange) -> None:
    start = pd.Timestamp("2024-01-02", tz="UTC")
    start_us = start.value // 1_000
    rows = get(
        exchange,
        "klines",
        symbol="BTCUSDT",
        interval="1m",
        startTime=start_us,
        limit=2,
        headers={"X-MBX-TIME-UNIT": "MICROSECOND"},
    ).json()
    assert [r[0] for r in rows] == [start_us, start_us + 60_000_000]
    assert rows[0][6] == start_us + 60_000_000 - 1
    assert get(exchange, "time", headers={"X-MBX-TIME-UNIT": "microsecond"}).json() == {
        "serverTime": NOW_MS * 1000
    }
    bad = get(exchange, "time", headers={"X-MBX-TIME-UNIT": "NANOSECOND"})
    assert_binance_error(bad, 400, -1194)


def test_outage_candles_are_absent(exchange: LocalExchange) -> None:
    start = pd.Timestamp("2024-01-02T00:00:00Z")
    exchange.add_outage("BTCUSDT", start + pd.Timedelta(minutes=2), start + pd.Timedelta(minutes=5))
    rows = get(
        exchange,
        "klines",
        symbol="BTCUSDT",
        interval="1m",
        startTime=start.value // 1_000_000,
        limit=5,
    ).json()
    minutes = [(r[0] - start.value // 1_000_000) // 60_000 for r in rows]
    assert minutes == [0, 1, 5, 6, 7], "five candles, skipping the outage, never invented"


def test_every_response_reports_used_weight_with_binance_weights(exchange: LocalExchange) -> None:
    charges: list[tuple[tuple[str, dict[str, Any]], int]] = [
        (("ping", {}), 1),
        (("time", {}), 1),
        (("exchangeInfo", {}), 20),
        (("klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1000}), 2),
        (("klines", {"symbol": "NOPE", "interval": "1m"}), 2),
        (("depth", {"symbol": "BTCUSDT"}), 5),
        (("depth", {"symbol": "BTCUSDT", "limit": 500}), 25),
        (("depth", {"symbol": "BTCUSDT", "limit": 1000}), 50),
        (("depth", {"symbol": "BTCUSDT", "limit": 5000}), 250),
        (("ticker/price", {"symbol": "BTCUSDT"}), 2),
        (("ticker/price", {}), 4),
        (("account", {}), 20),
    ]
    used = 0
    for (route, params), weight in charges:
        response = get(exchange, route, **params)
        used += weight
        assert response.headers["X-MBX-USED-WEIGHT-1M"] == str(used), route
        assert response.headers["X-MBX-USED-WEIGHT"] == str(used)
    assert [r.weight for r in exchange.requests] == [w for _, w in charges]


def test_weight_limit_answers_429_then_bans_with_418() -> None:
    with LocalExchange(weight_limit=30, ban_after=2, ban_seconds=5) as exchange:
        assert get(exchange, "exchangeInfo").status_code == 200
        limited = get(exchange, "exchangeInfo")
        assert_binance_error(limited, 429, -1003)
        assert "Too much request weight used" in limited.json()["msg"]
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert int(limited.headers["X-MBX-USED-WEIGHT-1M"]) > 30
        assert get(exchange, "ping").status_code == 429  # ignoring Retry-After: violation 1
        banned = get(exchange, "ping")  # violation 2: banned
        assert_binance_error(banned, 418, -1003)
        assert "IP banned until" in banned.json()["msg"]
        assert int(banned.headers["Retry-After"]) == 5
        assert get(exchange, "time").status_code == 418


def test_signed_account(exchange: LocalExchange) -> None:
    def account(query: str, key: str | None = TEST_API_KEY) -> requests.Response:
        headers = {"X-MBX-APIKEY": key} if key is not None else {}
        return requests.get(f"{exchange.url}/api/v3/account?{query}", headers=headers, timeout=5)

    now_ms = int(time.time() * 1000)
    good = account(signed_query({"omitZeroBalances": "true", "timestamp": now_ms}))
    assert good.status_code == 200
    body = good.json()
    assert body["accountType"] == "SPOT"
    assert body["balances"] == [
        {"asset": "BTC", "free": "0.51200000", "locked": "0.00000000"},
        {"asset": "USDT", "free": "10250.75000000", "locked": "100.00000000"},
    ]
    everything = account(signed_query({"timestamp": now_ms, "recvWindow": 10000})).json()
    assert [b["asset"] for b in everything["balances"]] == ["BTC", "ETH", "USDT"]

    assert_binance_error(account(signed_query({"timestamp": now_ms}), key=None), 401, -2014)
    assert_binance_error(account(signed_query({"timestamp": now_ms}), key="short"), 401, -2014)
    assert_binance_error(account(signed_query({"timestamp": now_ms}), key="A" * 64), 401, -2015)
    forged = signed_query({"timestamp": now_ms}, secret="not-the-secret")
    assert_binance_error(account(forged), 400, -1022)
    assert_binance_error(account(signed_query({"timestamp": now_ms - 60_000})), 400, -1021)
    assert_binance_error(account(signed_query({"recvWindow": 5000})), 400, -1102)


def test_ticker_price_and_depth_shapes(exchange: LocalExchange) -> None:
    price = get(exchange, "ticker/price", symbol="BTCUSDT").json()
    assert set(price) == {"symbol", "price"} and DECIMAL.match(price["price"])
    every = get(exchange, "ticker/price").json()
    assert [p["symbol"] for p in every] == ["BTCUSDT", "ETHUSDT"]
    assert_binance_error(get(exchange, "ticker/price", symbol="NOPE"), 400, -1121)

    book = get(exchange, "depth", symbol="BTCUSDT", limit=10).json()
    assert set(book) == {"lastUpdateId", "bids", "asks"} and isinstance(book["lastUpdateId"], int)
    assert len(book["bids"]) == len(book["asks"]) == 10
    bids = [Decimal(p) for p, _ in book["bids"]]
    asks = [Decimal(p) for p, _ in book["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert bids[0] < Decimal(price["price"]) < asks[0]
    assert all(DECIMAL.match(p) and DECIMAL.match(q) for p, q in book["bids"] + book["asks"])


def test_5xx_faults(exchange: LocalExchange) -> None:
    exchange.faults.add("/api/v3/time", "500")
    exchange.faults.add("/api/v3/time", "503")
    internal = get(exchange, "time")
    assert_binance_error(internal, 500, -1001)
    gateway = get(exchange, "time")
    assert gateway.status_code == 503 and gateway.headers["Content-Type"] == "text/html"
    assert "503" in gateway.text
    assert get(exchange, "time").status_code == 200, "faults stop after `times`"


def test_garbage_body_faults(exchange: LocalExchange) -> None:
    exchange.faults.add("/api/v3/klines", "truncated")
    exchange.faults.add("/api/v3/klines", "html")
    truncated = get(exchange, "klines", symbol="BTCUSDT", interval="1m", limit=3)
    assert truncated.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        truncated.json()
    html = get(exchange, "klines", symbol="BTCUSDT", interval="1m", limit=3)
    assert html.status_code == 200 and html.text.startswith("<!DOCTYPE html>")


def test_connection_faults(exchange: LocalExchange) -> None:
    exchange.faults.add("/api/v3/ping", "reset")
    exchange.faults.add("/api/v3/ping", "incomplete")
    exchange.faults.add("/api/v3/ping", "timeout", delay=0.5)
    with pytest.raises(requests.ConnectionError):
        get(exchange, "ping")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(exchange, "ping")
    with pytest.raises(requests.Timeout):
        requests.get(f"{exchange.url}/api/v3/ping", timeout=0.2)
    deadline = time.monotonic() + 5
    while len(exchange.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # the slow answer is recorded once the server gives it
    assert [r.fault for r in exchange.requests] == ["reset", "incomplete", "timeout"]


def test_fault_targeting_by_symbol_and_skip(exchange: LocalExchange) -> None:
    exchange.faults.add("/api/v3/klines", "502", times=2, symbol="ETHUSDT", skip=1)
    statuses = [
        get(exchange, "klines", symbol=s, interval="1m", limit=1).status_code
        for s in ("ETHUSDT", "BTCUSDT", "ETHUSDT", "ETHUSDT", "ETHUSDT")
    ]
    assert statuses == [200, 200, 502, 502, 200]


def test_injected_429_and_418_carry_retry_after(exchange: LocalExchange) -> None:
    exchange.faults.add("/api/v3/time", "429", retry_after=2)
    limited = get(exchange, "time")
    assert_binance_error(limited, 429, -1003)
    assert limited.headers["Retry-After"] == "2"
    assert "X-MBX-USED-WEIGHT-1M" in limited.headers
    exchange.reset()
    exchange.faults.add("/api/v3/time", "418", retry_after=3)
    assert_binance_error(get(exchange, "time"), 418, -1003)
    assert get(exchange, "ping").status_code == 418, "a ban covers every route until it ends"


def test_runs_by_hand() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.exchange", "--port", str(port), "--symbols", "BTCUSDT"],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                info = requests.get(f"http://127.0.0.1:{port}/api/v3/exchangeInfo", timeout=1)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the exchange did not start"
                time.sleep(0.1)
        assert [s["symbol"] for s in info.json()["symbols"]] == ["BTCUSDT"]
    finally:
        process.terminate()
        process.wait(timeout=10)
