"""`cryptota price | depth | balance` against the local Binance-compatible exchange."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cryptota_core.cli import main
from tests.exchange.server import TEST_API_KEY, TEST_API_SECRET, LocalExchange


@pytest.fixture
def exchange(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalExchange]:
    with LocalExchange(("BTCUSDT", "ETHUSDT"), now="2024-01-03T00:00:00Z") as running:
        monkeypatch.setenv("BINANCE_BASE_URL", running.url)
        yield running


def test_price(exchange: LocalExchange, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["price", "btcusdt"]) == 0
    symbol, price = capsys.readouterr().out.split()
    assert symbol == "BTCUSDT"
    assert float(price) > 0


def test_depth(exchange: LocalExchange, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["depth", "ETHUSDT", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "ETHUSDT order book" in out
    assert out.count("\n") >= 5


def test_balance_needs_keys_and_never_prints_them(
    exchange: LocalExchange, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["balance"]) == 1
    err = capsys.readouterr().err.strip()
    assert "BINANCE_API_KEY" in err and len(err.splitlines()) == 1
    monkeypatch.setenv("BINANCE_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", TEST_API_SECRET)
    assert main(["balance"]) == 0
    captured = capsys.readouterr()
    assert "USDT" in captured.out and "10250.75" in captured.out
    assert TEST_API_KEY not in captured.out + captured.err
    assert TEST_API_SECRET not in captured.out + captured.err


def test_wrong_secret_is_one_line_without_the_secret(
    exchange: LocalExchange, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BINANCE_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", "not-the-secret-123")
    assert main(["balance"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "not-the-secret-123" not in err and TEST_API_KEY not in err


def test_unknown_symbol_is_one_line(
    exchange: LocalExchange, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["price", "BTCUSDX"]) != 0
    err = capsys.readouterr().err.strip()
    assert "BTCUSDX" in err and len(err.splitlines()) == 1
