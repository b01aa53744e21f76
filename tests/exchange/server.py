"""A local Binance-compatible spot exchange on loopback, for tests and offline work.

DESIGN §9 allows exactly one stand-in: the external exchange. This is it. It speaks Binance's wire
format (routes, parameters, JSON shapes, string-encoded decimals, error JSON, headers, request
weights, 429/418 with ``Retry-After``) so that the real client stack, python-binance and our
:class:`~cryptota_core.market.sources.binance.BinanceSource` on top, runs unchanged against it.

Market data is the synthetic market (``generate_candles`` of
:mod:`cryptota_core.market.sources.synthetic` with the server's ``seed``): a candle depends only
on (seed, symbol, interval, open time), so a test can compare what a client fetched with
``generate_candles`` for exact equality. Decimals are sent
as Binance sends them (strings with at least 8 decimals) but always with enough digits to
round-trip the generator's float exactly.

Routes (all ``GET /api/v3/...``): ``ping``, ``time``, ``exchangeInfo`` (``symbol``/``symbols``/
``symbolStatus``), ``klines`` (``symbol``, ``interval``, ``startTime``, ``endTime``, ``limit``
default 500 max 1000, ``timeZone`` accepted and ignored), ``ticker/price``, ``depth`` and the
signed ``account`` (HMAC-SHA256 of the query string with the secret, ``X-MBX-APIKEY``,
``timestamp``/``recvWindow``). ``X-MBX-TIME-UNIT: MICROSECOND`` switches request and response
times to µs, as on Binance.

Limits: every response carries ``X-MBX-USED-WEIGHT-1M`` (and the legacy ``X-MBX-USED-WEIGHT``),
the IP's weight in the current window, charged with Binance's published weights. Over
``weight_limit`` the answer is 429 with ``Retry-After`` (seconds to the window's end); every
request sent during that back-off is a violation, and ``ban_after`` violations earn a 418 IP ban
of ``ban_seconds``. ``window_seconds`` (default 60) may be shortened for tests; the header keeps
Binance's ``-1M`` name so clients run unchanged. Windows follow the wall clock, like Binance's.

Control API for tests (all thread-safe):

- ``exchange.now = "2024-01-03T12:30:30Z"`` pins the market clock (``/time``, which candles have
  closed, the open last candle); ``None`` follows the wall clock. Signed-request timing always
  uses the wall clock, since clients sign with theirs.
- ``exchange.faults.add(path="/api/v3/klines", kind="503", times=3)``: scripted faults, see
  :class:`FaultPlan`.
- ``exchange.add_outage("BTCUSDT", start, end)``: candles opening in ``[start, end)`` are absent.
- ``exchange.set_status("BTCUSDT", "BREAK")``, ``exchange.charge(weight)`` (another client on the
  same IP), ``exchange.requests`` (every request: path, parameters, status, weight, fault).
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import math
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd

from cryptota_core.market.intervals import INTERVAL_MS, to_utc_timestamp
from cryptota_core.market.sources.synthetic import ORIGIN, generate_candles

log = logging.getLogger(__name__)

TEST_API_KEY = "cRyPtOtAtEsTkEy0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789aBc"
"""The API key the stand-in accepts by default (64 letters and digits, like Binance's)."""
TEST_API_SECRET = "cRyPtOtAtEsTsEcReT9876543210zYxWvUtSrQpOnMlKjIhGfEdCbA9876543210z"
"""The matching secret; signatures are HMAC-SHA256 of the query string under it."""

FAULT_KINDS = (
    "500",
    "502",
    "503",
    "504",
    "timeout",
    "truncated",
    "incomplete",
    "html",
    "reset",
    "429",
    "418",
)
"""``5xx``: that status (500 with Binance's -1001 JSON, 502-504 with a gateway's HTML page).
``timeout``: answer only after ``delay`` seconds. ``truncated``: 200 with half the JSON body (and
a matching Content-Length). ``incomplete``: 200 announcing the full length, half sent, connection
closed. ``html``: 200 with an HTML page instead of JSON. ``reset``: connection closed without an
answer. ``429``/``418``: rate limited / IP banned for ``retry_after`` seconds."""

_KNOWN_QUOTES = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY")
_KEY_FORMAT = re.compile(r"[A-Za-z0-9]{64}")
_US = 1000
_MAX_RECV_WINDOW = 60_000


class BinanceError(Exception):
    """An error answer in Binance's shape: HTTP ``status`` with ``{"code": ..., "msg": ...}``."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _mandatory(name: str) -> BinanceError:
    return BinanceError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _invalid_symbol() -> BinanceError:
    return BinanceError(400, -1121, "Invalid symbol.")


def _num(value: float) -> str:
    """A decimal as Binance writes it ("41397.05000000"), exact enough to round-trip."""
    return np.format_float_positional(float(value), unique=True, min_digits=8)


def _fixed(value: float, decimals: int = 8) -> str:
    return f"{value:.{decimals}f}"


@dataclass
class Fault:
    """One scripted fault: the next ``times`` requests to ``path`` (for ``symbol``, if given),
    after the first ``skip`` of them, get ``kind``. ``times=None`` means every one."""

    path: str
    kind: str
    times: int | None = 1
    symbol: str | None = None
    retry_after: float = 1.0
    delay: float = 2.0
    skip: int = 0
    hits: int = 0

    def matches(self, path: str, params: Mapping[str, str]) -> bool:
        return path == self.path and (self.symbol is None or params.get("symbol") == self.symbol)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class FaultPlan:
    """The faults the exchange injects, in the order they were added (first match wins)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        path: str,
        kind: str,
        times: int | None = 1,
        *,
        symbol: str | None = None,
        retry_after: float = 1.0,
        delay: float = 2.0,
        skip: int = 0,
    ) -> Fault:
        """Script a fault (see :data:`FAULT_KINDS`). ``path`` is the full route, e.g.
        ``/api/v3/klines``; ``retry_after`` is for 429/418, ``delay`` for ``timeout``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
        fault = Fault(path, kind, times, symbol, retry_after, delay, skip)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, path: str, params: Mapping[str, str]) -> Fault | None:
        """The fault this request gets, if any (and count it)."""
        with self._lock:
            for fault in self._faults:
                if fault.exhausted or not fault.matches(path, params):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.hits += 1
                return fault
        return None


@dataclass(frozen=True)
class RequestRecord:
    """One request the exchange answered (or dropped)."""

    time: float
    """Wall-clock epoch seconds when the request arrived."""
    path: str
    params: dict[str, str]
    status: int
    """HTTP status sent; 0 when the connection was dropped without an answer."""
    weight: int
    """Weight charged to the IP for it (injected 429/418 and bans charge nothing)."""
    fault: str | None = None
    rows: int | None = None
    """Klines rows sent (including an open candle), for klines requests."""
    time_unit: str = "MILLISECOND"
    api_key_sent: bool = False


@dataclass
class _Reply:
    status: int
    body: bytes
    weight: int
    content_type: str = "application/json;charset=UTF-8"
    rows: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class LocalExchange:
    """A running (after :meth:`start`) Binance-compatible exchange on ``host:port``.

    ``symbols`` are listed with status ``TRADING`` (or pass ``{symbol: status}``); ``intervals``
    restricts the klines intervals served (default: every interval the generator supports)."""

    def __init__(
        self,
        symbols: Iterable[str] | Mapping[str, str] = ("BTCUSDT", "ETHUSDT"),
        *,
        seed: int = 42,
        host: str = "127.0.0.1",
        port: int = 0,
        weight_limit: int = 6000,
        window_seconds: float = 60.0,
        ban_after: int = 3,
        ban_seconds: float = 120.0,
        intervals: Iterable[str] | None = None,
        api_key: str = TEST_API_KEY,
        api_secret: str = TEST_API_SECRET,
        balances: Mapping[str, tuple[str, str]] | None = None,
        now: str | pd.Timestamp | None = None,
    ) -> None:
        statuses = (
            dict(symbols) if isinstance(symbols, Mapping) else dict.fromkeys(symbols, "TRADING")
        )
        self._statuses = {s.upper(): v for s, v in statuses.items()}
        self.seed = seed
        self.host = host
        self.port = port
        self.weight_limit = weight_limit
        self.window_seconds = window_seconds
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self.intervals = tuple(intervals) if intervals is not None else tuple(INTERVAL_MS)
        self.api_key = api_key
        self.api_secret = api_secret
        self.balances = dict(
            balances
            if balances is not None
            else {
                "BTC": ("0.51200000", "0.00000000"),
                "ETH": ("0.00000000", "0.00000000"),
                "USDT": ("10250.75000000", "100.00000000"),
            }
        )
        self.faults = FaultPlan()
        self._fixed_now = to_utc_timestamp(now) if now is not None else None
        self._outages: dict[str, list[tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._weights: dict[int, int] = {}
        self._backoff_until = 0.0
        self._violations = 0
        self._banned_until = 0.0
        self._decimals: dict[str, tuple[int, int]] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalExchange:
        """Bind and serve in a background thread; returns self."""
        httpd = _Server((self.host, self.port), _Handler)
        httpd.exchange = self
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="local-exchange", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalExchange:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Scheme and host, as ``BINANCE_BASE_URL`` wants it."""
        return f"http://{self.host}:{self.port}"

    # -- control -----------------------------------------------------------------------------

    @property
    def now(self) -> pd.Timestamp:
        """The market clock: pinned, or the wall clock."""
        fixed = self._fixed_now
        return fixed if fixed is not None else pd.Timestamp.now(tz="UTC")

    @now.setter
    def now(self, value: str | pd.Timestamp | None) -> None:
        self._fixed_now = to_utc_timestamp(value) if value is not None else None

    def add_outage(self, symbol: str, start: str | pd.Timestamp, end: str | pd.Timestamp) -> None:
        """No candles of ``symbol`` (any interval) open in ``[start, end)``: an exchange outage."""
        lo, hi = (int(to_utc_timestamp(t).value // 1_000_000) for t in (start, end))
        with self._lock:
            self._outages.setdefault(symbol.upper(), []).append((lo, hi))

    def set_status(self, symbol: str, status: str) -> None:
        """List ``symbol`` with ``status`` (TRADING, BREAK, ...); adds it if unknown."""
        with self._lock:
            self._statuses[symbol.upper()] = status

    def charge(self, weight: int) -> int:
        """Charge ``weight`` to the current window as another client on this IP would; returns
        the window's new total."""
        with self._lock:
            window = self._window(time.time())
            self._weights[window] = self._weights.get(window, 0) + weight
            return self._weights[window]

    def used_weight(self) -> int:
        with self._lock:
            return self._weights.get(self._window(time.time()), 0)

    def weight_by_window(self) -> dict[int, int]:
        """Weight charged per window (index = epoch seconds // window_seconds)."""
        with self._lock:
            return dict(self._weights)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def count(self, path: str | None = None, *, status: int | None = None) -> int:
        """How many requests went to ``path`` (default: any) with ``status`` (default: any)."""
        return sum(
            1
            for r in self.requests
            if (path is None or r.path == path) and (status is None or r.status == status)
        )

    def reset(self) -> None:
        """Forget requests, weights, back-offs, bans and faults (not outages or the clock)."""
        with self._lock:
            self._records.clear()
            self._weights.clear()
            self._backoff_until = self._banned_until = 0.0
            self._violations = 0
        self.faults.clear()

    # -- request handling --------------------------------------------------------------------

    def _window(self, now: float) -> int:
        return int(now // self.window_seconds)

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def _used_header(self) -> dict[str, str]:
        used = str(self.used_weight())
        return {"X-MBX-USED-WEIGHT-1M": used, "X-MBX-USED-WEIGHT": used}

    def _limit_reply(self, status: int, retry_after: float, message: str) -> _Reply:
        reply = _error_reply(BinanceError(status, -1003, message), weight=0)
        reply.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return reply

    def _banned_message(self) -> str:
        return (
            f"Way too much request weight used; IP banned until {int(self._banned_until * 1000)}."
            " Please use WebSocket Streams for live updates to avoid bans."
        )

    def _admit(self, weight: int) -> _Reply | None:
        """Binance's IP limits: ban, back-off violations, then the window's weight."""
        with self._lock:
            now = time.time()
            if now < self._banned_until:
                return self._limit_reply(418, self._banned_until - now, self._banned_message())
            if now < self._backoff_until:
                self._violations += 1
                if self._violations >= self.ban_after:
                    self._banned_until = now + self.ban_seconds
                    self._violations = 0
                    return self._limit_reply(418, self.ban_seconds, self._banned_message())
            else:
                self._violations = 0
            window = self._window(now)
            used = self._weights.get(window, 0) + weight
            self._weights[window] = used
            if used > self.weight_limit:
                self._backoff_until = max(self._backoff_until, (window + 1) * self.window_seconds)
                per = "1 MINUTE" if self.window_seconds == 60 else f"{self.window_seconds:g} SECOND"
                return self._limit_reply(
                    429,
                    self._backoff_until - now,
                    f"Too much request weight used; current limit is {self.weight_limit} "
                    f"request weight per {per}. Please use WebSocket Streams for live updates "
                    "to avoid polling the API.",
                )
        return None

    def _inject_limit(self, fault: Fault) -> _Reply:
        with self._lock:
            now = time.time()
            if fault.kind == "418":
                self._banned_until = max(self._banned_until, now + fault.retry_after)
                message = self._banned_message()
            else:
                self._backoff_until = max(self._backoff_until, now + fault.retry_after)
                message = (
                    f"Too much request weight used; current limit is {self.weight_limit} request "
                    "weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                    "polling the API."
                )
        return self._limit_reply(int(fault.kind), fault.retry_after, message)

    def _answer(
        self, path: str, raw_query: str, params: dict[str, str], headers: Mapping[str, str]
    ) -> _Reply:
        """The normal answer to a request (which may be a Binance error)."""
        route = _ROUTES.get(path)
        if route is None:
            return _Reply(404, b"<html><body><h1>404 Not Found</h1></body></html>", 0, "text/html")
        weight = _route_weight(path, params)
        unit_header = headers.get("X-MBX-TIME-UNIT", "MILLISECOND")
        try:
            if unit_header.upper() not in ("MILLISECOND", "MICROSECOND"):
                raise BinanceError(
                    400,
                    -1194,
                    "Invalid value for time unit; expected either MICROSECOND or MILLISECOND.",
                )
            micro = unit_header.upper() == "MICROSECOND"
            payload, rows = route(self, params, raw_query, headers, micro)
        except BinanceError as e:
            return _error_reply(e, weight)
        body = json.dumps(payload, separators=(",", ":")).encode()
        return _Reply(200, body, weight, rows=rows)

    # -- routes ------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.now.value // 1_000_000)

    def _time_out(self, ms: int, micro: bool) -> int:
        return ms * _US if micro else ms

    def _symbol(self, params: Mapping[str, str]) -> str:
        symbol = params.get("symbol", "")
        if not symbol:
            raise _mandatory("symbol")
        if symbol not in self._statuses:
            raise _invalid_symbol()
        return symbol

    def _symbols_param(self, params: Mapping[str, str]) -> list[str] | None:
        if "symbol" in params and "symbols" in params:
            raise BinanceError(400, -1128, "Combination of optional parameters invalid.")
        if "symbol" in params:
            return [self._symbol(params)]
        if "symbols" in params:
            try:
                names = json.loads(params["symbols"])
            except ValueError:
                names = None
            if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
                raise BinanceError(
                    400,
                    -1100,
                    "Illegal characters found in parameter 'symbols'; legal range is "
                    '\'^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$\'.',
                )
            if any(s not in self._statuses for s in names):
                raise _invalid_symbol()
            return names
        return None

    def _route_ping(self, *_: Any) -> tuple[Any, None]:
        return {}, None

    def _route_time(
        self, params: Mapping[str, str], raw: str, headers: Mapping[str, str], micro: bool
    ) -> tuple[Any, None]:
        return {"serverTime": self._time_out(self._now_ms(), micro)}, None

    def _route_exchange_info(
        self, params: Mapping[str, str], raw: str, headers: Mapping[str, str], micro: bool
    ) -> tuple[Any, None]:
        names = self._symbols_param(params)
        with self._lock:
            statuses = dict(self._statuses)
        if names is None:
            names = sorted(statuses)
        wanted_status = params.get("symbolStatus")
        if wanted_status is not None:
            names = [s for s in names if statuses[s] == wanted_status]
        if self.window_seconds == 60:
            interval, interval_num = "MINUTE", 1
        else:
            interval, interval_num = "SECOND", int(self.window_seconds)
        return {
            "timezone": "UTC",
            "serverTime": self._time_out(self._now_ms(), micro),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": interval,
                    "intervalNum": interval_num,
                    "limit": self.weight_limit,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 61000,
                },
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_entry(s, statuses[s]) for s in names],
        }, None

    def _price_decimals(self, symbol: str) -> tuple[int, int]:
        """(price decimals, quantity decimals), from the symbol's price level."""
        cached = self._decimals.get(symbol)
        if cached is None:
            first = generate_candles(
                symbol, "1d", ORIGIN, ORIGIN + pd.Timedelta(days=1), self.seed, now=self.now
            )
            price = float(first["close"].iloc[0]) if len(first) else 1.0
            magnitude = math.floor(math.log10(price))
            cached = (int(np.clip(6 - magnitude, 0, 8)), int(np.clip(magnitude + 1, 0, 8)))
            self._decimals[symbol] = cached
        return cached

    def _symbol_entry(self, symbol: str, status: str) -> dict[str, Any]:
        quote = next((q for q in _KNOWN_QUOTES if symbol.endswith(q) and symbol != q), symbol[-4:])
        base = symbol[: -len(quote)]
        price_dec, qty_dec = self._price_decimals(symbol)
        tick, step = 10.0**-price_dec, 10.0**-qty_dec
        return {
            "symbol": symbol,
            "status": status,
            "baseAsset": base,
            "baseAssetPrecision": 8,
            "quoteAsset": quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": [
                "LIMIT",
                "LIMIT_MAKER",
                "MARKET",
                "STOP_LOSS_LIMIT",
                "TAKE_PROFIT_LIMIT",
            ],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": _fixed(tick),
                    "maxPrice": _fixed(1_000_000.0),
                    "tickSize": _fixed(tick),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": _fixed(step),
                    "maxQty": _fixed(9_000.0),
                    "stepSize": _fixed(step),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": _fixed(5.0),
                    "applyMinToMarket": True,
                    "maxNotional": _fixed(9_000_000.0),
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def _int_param(self, params: Mapping[str, str], name: str) -> int | None:
        value = params.get(name)
        if value is None:
            return None
        if not re.fullmatch(r"-?\d{1,20}", value):
            raise BinanceError(
                400,
                -1100,
                f"Illegal characters found in parameter '{name}'; legal range is "
                "'^[0-9]{1,20}$'.",
            )
        return int(value)

    def _route_klines(
        self, params: Mapping[str, str], raw: str, headers: Mapping[str, str], micro: bool
    ) -> tuple[Any, int]:
        symbol = self._symbol(params)
        interval = params.get("interval", "")
        if not interval:
            raise _mandatory("interval")
        if interval not in self.intervals:
            raise BinanceError(400, -1120, "Invalid interval.")
        limit = self._int_param(params, "limit")
        limit = 500 if limit is None else limit
        if not 1 <= limit <= 1000:
            raise BinanceError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        start = self._int_param(params, "startTime")
        end = self._int_param(params, "endTime")
        if start is not None and end is not None and start > end:
            raise BinanceError(400, -1023, "Start time is greater than end time.")
        if micro:  # µs in, ms inside: open_time*1000 >= startTime, open_time*1000 <= endTime
            start = None if start is None else -(-start // _US)
            end = None if end is None else end // _US
        step = INTERVAL_MS[interval]
        now_ms = self._now_ms()
        current_open = now_ms // step * step
        top = current_open if end is None else min(end, current_open)
        times = self._open_times(symbol, step, start, top, limit)
        rows = self._kline_rows(symbol, interval, times, now_ms, micro)
        return rows, len(rows)

    def _open_times(
        self, symbol: str, step: int, start: int | None, top: int, limit: int
    ) -> np.ndarray:
        """Open times of the candles a klines request selects, skipping outages: the first
        ``limit`` from ``start`` when given, else the last ``limit`` up to ``top``."""
        origin = int(ORIGIN.value // 1_000_000)
        with self._lock:
            outages = list(self._outages.get(symbol, ()))
        chosen: list[np.ndarray] = []
        have = 0
        if start is not None:
            cursor = max(-(-start // step) * step, origin)
            while have < limit and cursor <= top:
                block = np.arange(cursor, min(cursor + limit * step, top + 1), step, dtype="int64")
                block = _drop_outages(block, outages)[: limit - have]
                chosen.append(block)
                have += len(block)
                cursor += limit * step
            return np.concatenate(chosen) if chosen else np.empty(0, dtype="int64")
        cursor = top // step * step
        while have < limit and cursor >= origin:
            low = max(cursor - (limit - 1) * step, origin)
            block = np.arange(low, cursor + 1, step, dtype="int64")
            block = _drop_outages(block, outages)
            block = block[max(0, len(block) - (limit - have)) :]
            chosen.insert(0, block)
            have += len(block)
            cursor = low - step
        return np.concatenate(chosen) if chosen else np.empty(0, dtype="int64")

    def _kline_rows(
        self, symbol: str, interval: str, times: np.ndarray, now_ms: int, micro: bool
    ) -> list[list[Any]]:
        if not len(times):
            return []
        step = INTERVAL_MS[interval]
        closed = times[times + step <= now_ms]
        frame = pd.DataFrame()
        if len(closed):
            frame = generate_candles(
                symbol,
                interval,
                pd.Timestamp(int(closed[0]), unit="ms", tz="UTC"),
                pd.Timestamp(int(closed[-1]) + step, unit="ms", tz="UTC"),
                self.seed,
                now=pd.Timestamp(now_ms, unit="ms", tz="UTC"),
            )
            index_ms = pd.DatetimeIndex(frame.index).as_unit("ms").asi8
            frame = frame.iloc[np.searchsorted(index_ms, closed)]
        values = {c: frame[c].to_numpy() for c in frame.columns} if len(frame) else {}
        rows: list[list[Any]] = []
        for i, open_ms in enumerate(closed.tolist()):
            rows.append(self._row(open_ms, step, micro, {c: v[i] for c, v in values.items()}))
        if len(times) > len(closed):  # the newest candle is still open
            candle = self._open_candle(symbol, int(times[-1]), now_ms)
            if candle is not None:
                rows.append(self._row(int(times[-1]), step, micro, candle))
        return rows

    def _open_candle(self, symbol: str, open_ms: int, now_ms: int) -> dict[str, Any] | None:
        """The unfinished candle: its minutes so far (the current minute as generated)."""
        minute_end = now_ms // 60_000 * 60_000 + 60_000
        minutes = generate_candles(
            symbol,
            "1m",
            pd.Timestamp(open_ms, unit="ms", tz="UTC"),
            pd.Timestamp(minute_end, unit="ms", tz="UTC"),
            self.seed,
            now=pd.Timestamp(minute_end, unit="ms", tz="UTC"),
        )
        if not len(minutes):
            return None
        return {
            "open": minutes["open"].iloc[0],
            "high": minutes["high"].max(),
            "low": minutes["low"].min(),
            "close": minutes["close"].iloc[-1],
            **{
                c: minutes[c].sum()
                for c in ("volume", "quote_volume", "trades", "taker_buy_base", "taker_buy_quote")
            },
        }

    def _row(self, open_ms: int, step: int, micro: bool, c: Mapping[str, Any]) -> list[Any]:
        open_time = open_ms * _US if micro else open_ms
        close_time = (open_ms + step) * _US - 1 if micro else open_ms + step - 1
        return [
            open_time,
            _num(c["open"]),
            _num(c["high"]),
            _num(c["low"]),
            _num(c["close"]),
            _num(c["volume"]),
            close_time,
            _num(c["quote_volume"]),
            int(c["trades"]),
            _num(c["taker_buy_base"]),
            _num(c["taker_buy_quote"]),
            "0",
        ]

    def _last_price(self, symbol: str) -> float:
        """The latest trade price: the close of the current minute as generated."""
        minute = self._now_ms() // 60_000 * 60_000
        candle = generate_candles(
            symbol,
            "1m",
            pd.Timestamp(minute, unit="ms", tz="UTC"),
            pd.Timestamp(minute + 60_000, unit="ms", tz="UTC"),
            self.seed,
            now=pd.Timestamp(minute + 60_000, unit="ms", tz="UTC"),
        )
        return float(candle["close"].iloc[-1]) if len(candle) else 1.0

    def _route_ticker_price(
        self, params: Mapping[str, str], raw: str, headers: Mapping[str, str], micro: bool
    ) -> tuple[Any, None]:
        names = self._symbols_param(params)
        if names is not None and "symbol" in params:
            return {"symbol": names[0], "price": _num(self._last_price(names[0]))}, None
        with self._lock:
            every = sorted(self._statuses)
        return [{"symbol": s, "price": _num(self._last_price(s))} for s in names or every], None

    def _route_depth(
        self, params: Mapping[str, str], raw: str, headers: Mapping[str, str], micro: bool
    ) -> tuple[Any, None]:
        symbol = self._symbol(params)
        limit = self._int_param(params, "limit")
        limit = 100 if limit is None else limit
        if limit < 1:
            raise BinanceError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        limit = min(limit, 5000)
        price = self._last_price(symbol)
        price_dec, qty_dec = self._price_decimals(symbol)
        tick = 10.0**-price_dec
        minute = self._now_ms() // 60_000
        rng = np.random.default_rng([self.seed, zlib.crc32(symbol.encode()), minute])
        levels = np.cumsum(rng.integers(1, 4, size=(2, limit)), axis=1) * tick
        qty = np.round(rng.lognormal(-1.0, 1.2, size=(2, limit)), qty_dec) + 10.0**-qty_dec
        # Prices on the symbol's tick, written with Binance's 8 decimals.
        bids = [
            [_fixed(round(price - off, price_dec)), _fixed(q)]
            for off, q in zip(levels[0], qty[0], strict=True)
            if price - off > 0
        ]
        asks = [
            [_fixed(round(price + off, price_dec)), _fixed(q)]
            for off, q in zip(levels[1], qty[1], strict=True)
        ]
        return {"lastUpdateId": self._now_ms() // 100, "bids": bids, "asks": asks}, None

    def _route_account(
        self, params: Mapping[str, str], raw: str, headers: Mapping[str, str], micro: bool
    ) -> tuple[Any, None]:
        self._check_signed(params, raw, headers, micro)
        omit_zero = params.get("omitZeroBalances", "false").lower() == "true"
        balances = [
            {"asset": asset, "free": free, "locked": locked}
            for asset, (free, locked) in sorted(self.balances.items())
            if not (omit_zero and float(free) == 0 and float(locked) == 0)
        ]
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": "0.00100000",
                "taker": "0.00100000",
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self._time_out(self._now_ms(), micro),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 354937868,
        }, None

    def _check_signed(
        self, params: Mapping[str, str], raw: str, headers: Mapping[str, str], micro: bool
    ) -> None:
        """Binance's SIGNED-route checks, in its order: key, mandatory parameters, signature,
        timing (against the wall clock, which the client signs with)."""
        key = headers.get("X-MBX-APIKEY", "")
        if not _KEY_FORMAT.fullmatch(key):
            raise BinanceError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, self.api_key):
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        timestamp = self._int_param(params, "timestamp")
        if timestamp is None:
            raise _mandatory("timestamp")
        signature = params.get("signature", "")
        if not signature:
            raise _mandatory("signature")
        recv_window = float(params.get("recvWindow", "5000") or 5000)
        if recv_window > _MAX_RECV_WINDOW:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        total_params = "&".join(p for p in raw.split("&") if not p.startswith("signature="))
        expected = hmac.new(
            self.api_secret.encode(), total_params.encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        server_ms = time.time() * 1000
        sent_ms = timestamp / _US if micro else timestamp
        if sent_ms >= server_ms + 1000 or server_ms - sent_ms > recv_window:
            raise BinanceError(
                400, -1021, "Timestamp for this request is outside of the recvWindow."
            )


def _drop_outages(times: np.ndarray, outages: list[tuple[int, int]]) -> np.ndarray:
    if not outages or not len(times):
        return times
    keep = np.ones(len(times), dtype=bool)
    for lo, hi in outages:
        keep &= ~((times >= lo) & (times < hi))
    return times[keep]


def _route_weight(path: str, params: Mapping[str, str]) -> int:
    """Binance's published IP weights for the routes served here."""
    if path == "/api/v3/depth":
        try:
            limit = int(params.get("limit", "100"))
        except ValueError:
            limit = 100
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if path == "/api/v3/ticker/price":
        return 2 if "symbol" in params else 4
    return _FIXED_WEIGHTS[path]


_FIXED_WEIGHTS = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/klines": 2,
    "/api/v3/account": 20,
}

_ROUTES: dict[str, Any] = {
    "/api/v3/ping": LocalExchange._route_ping,
    "/api/v3/time": LocalExchange._route_time,
    "/api/v3/exchangeInfo": LocalExchange._route_exchange_info,
    "/api/v3/klines": LocalExchange._route_klines,
    "/api/v3/ticker/price": LocalExchange._route_ticker_price,
    "/api/v3/depth": LocalExchange._route_depth,
    "/api/v3/account": LocalExchange._route_account,
}


def _error_reply(error: BinanceError, weight: int) -> _Reply:
    body = json.dumps({"code": error.code, "msg": error.msg}, separators=(",", ":")).encode()
    return _Reply(error.status, body, weight)


_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} "
    "{reason}</h1></center>\r\n<hr><center>CloudFront</center>\r\n</body>\r\n</html>\r\n"
)
_MAINTENANCE_PAGE = (
    "<!DOCTYPE html><html><head><title>Binance - System Maintenance</title></head><body><h1>"
    "System maintenance</h1><p>We will be back soon.</p></body></html>"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    exchange: LocalExchange

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that gave up (timeouts) leave broken pipes behind; that is expected here.
        log.debug("connection from %s ended abruptly", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "LocalExchange/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header follows the market clock, as Binance's follows its own."""
        exchange = self.server.exchange
        when = exchange.now.timestamp() if timestamp is None else timestamp
        return email.utils.formatdate(when, usegmt=True)

    def do_GET(self) -> None:
        exchange = self.server.exchange
        arrived = time.time()
        parts = urlsplit(self.path)
        path, raw_query = parts.path, parts.query
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        headers = {k.upper(): v for k, v in self.headers.items()}
        time_unit = headers.get("X-MBX-TIME-UNIT", "MILLISECOND").upper()

        def record(status: int, weight: int, fault: str | None, rows: int | None = None) -> None:
            exchange._record(
                RequestRecord(
                    arrived,
                    path,
                    params,
                    status,
                    weight,
                    fault,
                    rows,
                    time_unit,
                    "X-MBX-APIKEY" in headers,
                )
            )

        fault = exchange.faults.take(path, params)
        if fault is not None and fault.kind in ("429", "418"):
            reply = exchange._inject_limit(fault)
            self._send(reply, exchange._used_header())
            record(reply.status, 0, fault.kind)
            return
        weight = _route_weight(path, params) if path in _ROUTES else 0
        refused = exchange._admit(weight)
        if refused is not None:
            self._send(refused, exchange._used_header())
            record(refused.status, 0 if refused.status == 418 else weight, None)
            return
        if fault is not None and fault.kind == "reset":
            record(0, weight, fault.kind)
            self._drop()
            return
        if fault is not None and fault.kind == "timeout":
            time.sleep(fault.delay)
        reply = exchange._answer(path, raw_query, params, headers)
        kind = fault.kind if fault is not None else None
        if kind in ("500", "502", "503", "504"):
            reply = self._server_error(int(kind), weight)
        elif kind == "html":
            reply = _Reply(200, _MAINTENANCE_PAGE.encode(), weight, "text/html; charset=utf-8")
        elif kind == "truncated":
            reply.body = reply.body[: max(1, len(reply.body) // 2)]
        extra = exchange._used_header()
        if kind == "incomplete":
            record(reply.status, weight, kind, reply.rows)
            self._send(reply, extra, send_fraction=0.5)
            self._drop()
            return
        record(reply.status, weight, kind, reply.rows)
        self._send(reply, extra)

    def _server_error(self, status: int, weight: int) -> _Reply:
        if status == 500:
            return _error_reply(
                BinanceError(
                    500, -1001, "Internal error; unable to process your request. Please try again."
                ),
                weight,
            )
        reason = self.responses.get(status, ("Error",))[0]
        page = _GATEWAY_PAGE.format(status=status, reason=reason)
        return _Reply(status, page.encode(), weight, "text/html")

    def _send(self, reply: _Reply, extra: Mapping[str, str], send_fraction: float = 1.0) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in {**extra, **reply.headers}.items():
                self.send_header(name, value)
            self.end_headers()
            cut = len(reply.body) if send_fraction >= 1 else int(len(reply.body) * send_fraction)
            self.wfile.write(reply.body[:cut])
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drop(self) -> None:
        """Close the connection at once, without (the rest of) an answer."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
