"""Market snapshots (price, order book, signed balances) against the local exchange, on the same
client wrapper as BinanceSource; credentials come from the environment and never leak."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pandas as pd
import pytest

from cryptota_core.binance.rest import BinanceRest
from cryptota_core.errors import ConfigError, InvalidInputError
from cryptota_core.market import snapshot
from cryptota_core.market.snapshot import MarketSnapshot
from cryptota_core.market.sources.binance import BinanceSource
from cryptota_core.market.sources.synthetic import generate_candles
from cryptota_core.settings import load_settings
from tests.exchange.server import TEST_API_KEY, TEST_API_SECRET, LocalExchange

NOW = pd.Timestamp("2024-01-03T12:30:30Z")


@pytest.fixture
def exchange() -> Iterator[LocalExchange]:
    with LocalExchange(now=NOW) as running:
        yield running


@pytest.fixture
def env(exchange: LocalExchange, monkeypatch: pytest.MonkeyPatch) -> LocalExchange:
    """BINANCE_* variables pointing at the local exchange, with its test credentials."""
    monkeypatch.setenv("BINANCE_BASE_URL", exchange.url)
    monkeypatch.setenv("BINANCE_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", TEST_API_SECRET)
    return exchange


def test_snapshots_share_the_binance_client_wrapper(env: LocalExchange) -> None:
    settings = load_settings()
    market = MarketSnapshot.from_settings(settings)
    assert type(market.rest) is type(BinanceSource.from_settings(settings).rest) is BinanceRest
    assert market.rest.base_url == env.url


def test_current_price_is_the_latest_trade(env: LocalExchange) -> None:
    minute = generate_candles("BTCUSDT", "1m", "2024-01-03T12:30", "2024-01-03T12:31", 42)
    assert snapshot.current_price("btcusdt") == minute["close"].iloc[0]
    assert env.requests[-1].weight == 2


def test_order_book(env: LocalExchange) -> None:
    book = snapshot.order_book("BTCUSDT", limit=20)
    assert book.symbol == "BTCUSDT" and book.last_update_id > 0
    assert len(book.bids) == len(book.asks) == 20
    assert list(book.bids.columns) == ["price", "quantity"]
    assert book.bids["price"].is_monotonic_decreasing
    assert book.asks["price"].is_monotonic_increasing
    assert 0 < book.spread < 1.0
    assert (book.bids["quantity"] > 0).all()
    deep = snapshot.order_book("BTCUSDT", limit=1000)
    assert len(deep.asks) == 1000
    assert [r.weight for r in env.requests] == [5, 50]


def test_order_book_limit_and_symbol_are_checked(env: LocalExchange) -> None:
    with pytest.raises(InvalidInputError, match=r"use 1\.\.5000"):
        snapshot.order_book("BTCUSDT", limit=0)
    assert env.count() == 0
    with pytest.raises(InvalidInputError, match="does not list symbol 'DOGEUSDX'"):
        snapshot.order_book("DOGEUSDX")
    assert env.count() == 1, "an unknown symbol is not retried"


def test_account_balances(env: LocalExchange) -> None:
    balances = snapshot.account_balances()
    assert list(balances.index) == ["BTC", "USDT"]
    assert balances.loc["USDT"].to_dict() == {"free": 10250.75, "locked": 100.0, "total": 10350.75}
    every = snapshot.account_balances(include_zero=True)
    assert list(every.index) == ["BTC", "ETH", "USDT"]
    assert env.requests[-1].api_key_sent and env.requests[-1].weight == 20


def test_missing_credentials_name_the_variables(
    exchange: LocalExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINANCE_BASE_URL", exchange.url)
    monkeypatch.setenv("BINANCE_API_KEY", TEST_API_KEY)
    with pytest.raises(ConfigError) as failure:
        snapshot.account_balances()
    message = str(failure.value)
    assert "BINANCE_API_KEY and BINANCE_API_SECRET" in message
    assert "missing: BINANCE_API_SECRET" in message
    assert TEST_API_KEY not in message
    assert exchange.count() == 0


def test_wrong_secret_is_a_config_error_without_leaks(
    env: LocalExchange, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "W" * 64
    monkeypatch.setenv("BINANCE_API_SECRET", wrong)
    caplog.set_level(logging.DEBUG)
    market = MarketSnapshot.from_settings()
    with pytest.raises(ConfigError, match="code -1022") as failure:
        market.account_balances()
    texts = [str(failure.value), repr(market), repr(market.rest)]
    texts += [r.getMessage() for r in caplog.records]
    for secret in (TEST_API_KEY, wrong):
        assert not [t for t in texts if secret in t]
    assert env.count("/api/v3/account") == 1, "bad credentials are not retried"
