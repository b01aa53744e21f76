"""Market snapshots from Binance: the last price, the order book, the account's balances.

These are the old service's "market snapshot" calls, kept for the CLI, notebooks and the paper
trading asset. They run on the same :class:`~cryptota_core.binance.rest.BinanceRest`
wrapper as candle ingestion, so they share its base URL handling, weight budget, retries and error
translation. Balances are a signed call: the credentials come from ``BINANCE_API_KEY`` and
``BINANCE_API_SECRET`` through the settings, as secrets that are never logged or shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from cryptota_core.binance.ratelimit import WeightLimiter, open_rate_limiter
from cryptota_core.binance.rest import BinanceRest
from cryptota_core.errors import ConfigError, DataError, InvalidInputError
from cryptota_core.market.frame import normalise_symbol
from cryptota_core.settings import Settings, load_settings

MAX_BOOK_LIMIT = 5000
"""Deepest order book Binance returns (``/api/v3/depth`` ``limit``)."""


@dataclass(frozen=True)
class OrderBook:
    """One order book snapshot: ``bids`` best (highest) first, ``asks`` best (lowest) first, each
    with float columns ``price`` and ``quantity``."""

    symbol: str
    last_update_id: int
    bids: pd.DataFrame
    asks: pd.DataFrame

    @property
    def spread(self) -> float:
        """Best ask minus best bid (NaN when a side is empty)."""
        if self.bids.empty or self.asks.empty:
            return float("nan")
        return float(self.asks["price"].iloc[0] - self.bids["price"].iloc[0])


def _levels(side: Any, name: str, symbol: str) -> pd.DataFrame:
    if not isinstance(side, list) or any(
        not isinstance(level, list) or len(level) < 2 for level in side
    ):
        raise DataError(
            f"Binance depth {symbol} has malformed {name}: expected [[price, quantity], ...]"
        )
    try:
        return pd.DataFrame(
            {
                "price": pd.to_numeric([level[0] for level in side]).astype("float64"),
                "quantity": pd.to_numeric([level[1] for level in side]).astype("float64"),
            }
        )
    except (TypeError, ValueError) as e:
        raise DataError(f"Binance depth {symbol} has non-numeric {name}: {e}") from e


class MarketSnapshot:
    """Snapshot calls on one :class:`BinanceRest` (build it with :meth:`from_settings`)."""

    def __init__(self, rest: BinanceRest) -> None:
        self.rest = rest

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        rate_limiter: WeightLimiter | None = None,
        **options: Any,
    ) -> MarketSnapshot:
        """Snapshots from ``BINANCE_BASE_URL`` with ``BINANCE_API_KEY``/``SECRET`` (optional
        unless :meth:`account_balances` is called), on the configured weight budget."""
        settings = settings or load_settings()
        return cls(
            BinanceRest(
                settings.binance_base_url,
                api_key=settings.binance_api_key,
                api_secret=settings.binance_api_secret,
                rate_limiter=rate_limiter or open_rate_limiter(settings),
                **options,
            )
        )

    def __repr__(self) -> str:
        return f"MarketSnapshot({self.rest!r})"

    def close(self) -> None:
        self.rest.close()

    def current_price(self, symbol: str) -> float:
        """The latest trade price of ``symbol`` (``/api/v3/ticker/price``)."""
        symbol = normalise_symbol(symbol)
        answer = self.rest.call("ticker/price", {"symbol": symbol})
        try:
            return float(answer["price"])
        except (TypeError, KeyError, ValueError) as e:
            raise DataError(
                f"Binance ticker/price {symbol} answered without a numeric price; retry later"
            ) from e

    def order_book(self, symbol: str, limit: int = 100) -> OrderBook:
        """The top ``limit`` levels (1-5000) of each side of ``symbol``'s order book. Deeper books
        cost more weight: 5 up to 100 levels, 25 to 500, 50 to 1000, 250 beyond."""
        symbol = normalise_symbol(symbol)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_BOOK_LIMIT:
            raise InvalidInputError(
                f"order book limit {limit!r} is out of range: use 1..{MAX_BOOK_LIMIT} levels"
            )
        answer = self.rest.call("depth", {"symbol": symbol, "limit": limit})
        if not isinstance(answer, dict) or "bids" not in answer or "asks" not in answer:
            raise DataError(f"Binance depth {symbol} answered without bids and asks; retry later")
        bids = _levels(answer["bids"], "bids", symbol)
        asks = _levels(answer["asks"], "asks", symbol)
        bids = bids.sort_values("price", ascending=False, kind="stable", ignore_index=True)
        asks = asks.sort_values("price", ascending=True, kind="stable", ignore_index=True)
        return OrderBook(symbol, int(answer.get("lastUpdateId", 0)), bids, asks)

    def account_balances(self, *, include_zero: bool = False) -> pd.DataFrame:
        """Spot balances of the account behind ``BINANCE_API_KEY``: a frame indexed by ``asset``
        with float columns ``free``, ``locked`` and ``total``; zero balances only on request."""
        missing = self.rest.missing_credentials()
        if missing:
            raise ConfigError(
                "account balances need Binance API credentials: set BINANCE_API_KEY and "
                f"BINANCE_API_SECRET (missing: {', '.join(missing)})"
            )
        params = {} if include_zero else {"omitZeroBalances": "true"}
        answer = self.rest.call("account", params, signed=True)
        balances = answer.get("balances") if isinstance(answer, dict) else None
        if not isinstance(balances, list):
            raise DataError("Binance account answered without a balances list; retry later")
        try:
            frame = pd.DataFrame(
                {
                    "asset": [str(b["asset"]) for b in balances],
                    "free": [float(b["free"]) for b in balances],
                    "locked": [float(b["locked"]) for b in balances],
                }
            )
        except (TypeError, KeyError, ValueError) as e:
            raise DataError(f"Binance account has a malformed balance entry ({e})") from e
        frame["total"] = frame["free"] + frame["locked"]
        if not include_zero:
            frame = frame[frame["total"] != 0]
        return frame.set_index("asset").sort_index()


def current_price(symbol: str, *, settings: Settings | None = None) -> float:
    """The latest trade price of ``symbol`` on Binance."""
    snapshot = MarketSnapshot.from_settings(settings)
    try:
        return snapshot.current_price(symbol)
    finally:
        snapshot.close()


def order_book(symbol: str, limit: int = 100, *, settings: Settings | None = None) -> OrderBook:
    """The top ``limit`` levels of ``symbol``'s Binance order book."""
    snapshot = MarketSnapshot.from_settings(settings)
    try:
        return snapshot.order_book(symbol, limit)
    finally:
        snapshot.close()


def account_balances(
    *, settings: Settings | None = None, include_zero: bool = False
) -> pd.DataFrame:
    """Spot balances of the Binance account behind ``BINANCE_API_KEY``/``BINANCE_API_SECRET``."""
    snapshot = MarketSnapshot.from_settings(settings)
    try:
        return snapshot.account_balances(include_zero=include_zero)
    finally:
        snapshot.close()
