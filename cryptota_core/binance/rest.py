"""The Binance spot REST transport: one place where calling the API is set up, throttled,
retried and translated, for :class:`~cryptota_core.market.sources.binance.BinanceSource` (candles)
and :mod:`cryptota_core.market.snapshot` (prices, order books, balances).

- **Where**: ``BINANCE_BASE_URL`` is scheme and host only (DESIGN §7). python-binance 1.0.37 has no
  base-URL argument: ``BaseClient.__init__`` formats the class template
  ``API_URL = "https://api{}.binance.{}/api"`` with ``base_endpoint`` and ``tld`` into an
  *instance* attribute, and ``_create_api_uri`` builds ``API_URL + "/v3/" + path`` from it (unless
  ``testnet``/``demo`` is set). So after constructing ``Client(..., ping=False)`` we overwrite that
  instance attribute with ``base_url + "/api"``; every spot call then goes to
  ``{base_url}/api/v3/{path}``. ``ping=False`` keeps the constructor off the network.
- **How much**: each route's request weight (:func:`request_weight`, from Binance's spot REST
  docs) is taken from a :class:`~cryptota_core.binance.ratelimit.WeightLimiter` before the
  request, and the server's own count (``X-MBX-USED-WEIGHT-1M``, read from ``client.response``) is
  fed back after it, so the budget also covers other clients on the same IP.
- **When it fails**: 5xx, timeouts, connection errors and garbage bodies (HTML, truncated JSON)
  are retried with exponential backoff and full jitter, bounded by ``max_retries``. 429 pauses
  the whole budget for ``Retry-After``; 418 (IP ban) waits it out only when it is shorter than
  ``max_ban_wait``, else stops with :class:`SourceUnavailableError`. A bad symbol (-1121) or
  interval (-1120) fails at once, one line, no retry. Every third-party exception is translated
  here, ``from`` the original.
- **Secrets**: the API key and secret are kept as :class:`~pydantic.SecretStr` and handed only to
  python-binance (which sends the key as ``X-MBX-APIKEY`` and signs with the secret); they never
  reach a log record, an exception message or a ``repr``.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import urlsplit

import pandas as pd
import requests
from pydantic import SecretStr

from cryptota_core.binance.ratelimit import LocalWeightLimiter, WeightLimiter
from cryptota_core.errors import (
    ConfigError,
    DataError,
    InvalidInputError,
    SourceUnavailableError,
)
from cryptota_core.market.intervals import INTERVAL_MS

with warnings.catch_warnings():
    # python-binance imports websockets' legacy client at import time; that deprecation is the
    # library's to fix, and we never use its websockets.
    warnings.simplefilter("ignore", DeprecationWarning)
    from binance.client import Client
    from binance.exceptions import BinanceAPIException, BinanceRequestException

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.binance.com"

TimeUnit = Literal["MILLISECOND", "MICROSECOND"]

REQUEST_WEIGHTS: dict[str, int] = {
    "ping": 1,
    "time": 1,
    "exchangeInfo": 20,
    "klines": 2,
    "uiKlines": 2,
    "account": 20,
}
"""IP request weight of the fixed-weight spot routes, from Binance's spot REST API docs
(rest-api.md: klines and uiKlines 2, exchangeInfo 20, account 20, ping and time 1)."""

_DEPTH_WEIGHTS: tuple[tuple[int, int], ...] = ((100, 5), (500, 25), (1000, 50), (5000, 250))
"""Order book weight by ``limit``: 1-100 -> 5, 101-500 -> 25, 501-1000 -> 50, 1001-5000 -> 250."""

_US_THRESHOLD = 10**14
"""Epoch ms stays below 1e14 until the year 5138; epoch µs passed it in 1973."""

_TRANSIENT_CODES = frozenset({-1000, -1001, -1006, -1007, -1008})
"""UNKNOWN, DISCONNECTED, UNEXPECTED_RESP, TIMEOUT, SERVER_BUSY: Binance's side, worth a retry."""

_CREDENTIAL_CODES = frozenset({-2014, -2015, -1022, -1002})
"""Bad API-key format, key/IP/permissions refused, bad signature, unauthorised."""


def request_weight(path: str, params: Mapping[str, Any] | None = None) -> int:
    """The IP request weight Binance charges for ``GET /api/v3/{path}`` with ``params``."""
    params = params or {}
    if path == "depth":
        limit = int(params.get("limit", 100))
        return next((w for top, w in _DEPTH_WEIGHTS if limit <= top), _DEPTH_WEIGHTS[-1][1])
    if path in ("ticker/price", "ticker/bookTicker"):
        return 2 if "symbol" in params else 4
    try:
        return REQUEST_WEIGHTS[path]
    except KeyError:
        raise InvalidInputError(
            f"no request weight known for /api/v3/{path}; add it to REQUEST_WEIGHTS"
        ) from None


def _secret(value: SecretStr | str | None) -> SecretStr | None:
    """Wrap a credential so it cannot leak through a repr or log line; empty means absent."""
    if value is None:
        return None
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return SecretStr(raw) if raw else None


def _check_base_url(value: str) -> str:
    """Scheme and host (and port) only: python-binance appends ``/api/v3/...`` itself."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"BINANCE_BASE_URL={value!r} is not an http(s) URL: use scheme and host, such as "
            "https://api.binance.com or https://testnet.binance.vision"
        )
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ConfigError(
            f"BINANCE_BASE_URL={value!r} has a path: give scheme and host only (e.g. "
            f"{parts.scheme}://{parts.netloc}); /api/v3/... is appended"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _retry_after(response: requests.Response | None) -> float | None:
    """Seconds from a ``Retry-After`` header (Binance sends whole seconds)."""
    if response is None:
        return None
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class BinanceRest:
    """python-binance's :class:`~binance.client.Client` pointed at ``base_url``, with Binance's
    weights, limits, retries and errors handled. One per configuration; safe to share between
    threads (each concurrent call leases its own client, as a ``requests.Session`` is not meant
    for concurrent use).

    ``backoff_base``/``backoff_cap`` bound the full-jitter backoff (seconds); ``max_ban_wait`` is
    the longest IP ban (418 ``Retry-After``) worth waiting out instead of failing."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: SecretStr | str | None = None,
        api_secret: SecretStr | str | None = None,
        rate_limiter: WeightLimiter | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_ban_wait: float = 300.0,
        time_unit: TimeUnit = "MILLISECOND",
    ) -> None:
        if max_retries < 0:
            raise InvalidInputError(f"max_retries must be >= 0, got {max_retries!r}")
        if time_unit not in ("MILLISECOND", "MICROSECOND"):
            raise InvalidInputError(
                f"time unit {time_unit!r} is not MILLISECOND or MICROSECOND (X-MBX-TIME-UNIT)"
            )
        self.base_url = _check_base_url(base_url)
        self._api_key = _secret(api_key)
        self._api_secret = _secret(api_secret)
        self.limiter: WeightLimiter = rate_limiter or LocalWeightLimiter()
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_ban_wait = max_ban_wait
        self.time_unit: TimeUnit = time_unit
        self._idle: queue.SimpleQueue[Client] = queue.SimpleQueue()
        self._clients: list[Client] = []
        self._clients_lock = threading.Lock()

    def __repr__(self) -> str:
        credentials = "set" if self.has_credentials else "none"
        return f"BinanceRest({self.base_url!r}, credentials={credentials})"

    @property
    def has_credentials(self) -> bool:
        """Whether both an API key and a secret were given (signed routes need both)."""
        return not self.missing_credentials()

    def missing_credentials(self) -> list[str]:
        """The environment variables a signed call still needs, by name (never values)."""
        missing = []
        if self._api_key is None:
            missing.append("BINANCE_API_KEY")
        if self._api_secret is None:
            missing.append("BINANCE_API_SECRET")
        return missing

    # -- clients -----------------------------------------------------------------------------

    def _new_client(self) -> Client:
        client = Client(
            self._api_key.get_secret_value() if self._api_key else None,
            self._api_secret.get_secret_value() if self._api_secret else None,
            requests_params={"timeout": self.timeout},
            ping=False,
            time_unit=self.time_unit if self.time_unit != "MILLISECOND" else None,
        )
        # The URL override described in the module docstring: python-binance formats its
        # class-level template into this instance attribute and builds every spot URL from it.
        client.API_URL = f"{self.base_url}/api"
        client.MARGIN_API_URL = f"{self.base_url}/sapi"
        with self._clients_lock:
            self._clients.append(client)
        return client

    def reserve(self, count: int) -> None:
        """Build clients up to ``count`` now, in the calling thread. python-binance's constructor
        creates an asyncio event loop in a thread that has none; building the pool in the
        caller's thread keeps worker threads from each leaking one."""
        while True:
            with self._clients_lock:
                missing = count - len(self._clients)
            if missing <= 0:
                return
            self._idle.put(self._new_client())

    @contextmanager
    def _lease(self) -> Iterator[Client]:
        try:
            client = self._idle.get_nowait()
        except queue.Empty:
            client = self._new_client()
        try:
            yield client
        finally:
            self._idle.put(client)

    def close(self) -> None:
        """Close every client's HTTP session."""
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close_connection()
        self._idle = queue.SimpleQueue()

    # -- calls -------------------------------------------------------------------------------

    def call(
        self, path: str, params: Mapping[str, Any] | None = None, *, signed: bool = False
    ) -> Any:
        """``GET /api/v3/{path}`` with ``params``: the decoded JSON, or a translated error."""
        if signed and not self.has_credentials:
            raise ConfigError(
                f"/api/v3/{path} is a signed Binance route and needs API credentials: set "
                f"BINANCE_API_KEY and BINANCE_API_SECRET (missing: "
                f"{', '.join(self.missing_credentials())})"
            )
        params = dict(params or {})
        weight = request_weight(path, params)
        what = " ".join([path, *(str(params[k]) for k in ("symbol", "interval") if k in params)])
        failures = 0
        while True:
            window = self.limiter.acquire(weight)
            response: requests.Response | None = None
            wait: float | None = None
            last: Exception
            try:
                with self._lease() as client:
                    client.response = None
                    try:
                        # python-binance's generic GET: signs (timestamp, recvWindow, HMAC) when
                        # asked, and mutates the dict it is given, hence the copy.
                        result = client._get(path, signed, data=dict(params))
                    finally:
                        response = client.response
            except BinanceAPIException as e:
                self._observe(e.response, window)
                problem, wait = self._api_error(e, path, params, what)
                last = e
            except BinanceRequestException as e:
                self._observe(response, window)
                status = response.status_code if response is not None else "?"
                problem, last = f"HTTP {status} with a body that is not JSON (or truncated)", e
            except requests.Timeout as e:
                problem, last = f"no answer within {self.timeout:g} s", e
            except (
                requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ) as e:
                problem, last = f"connection failed ({type(e).__name__})", e
            except requests.RequestException as e:
                raise SourceUnavailableError(
                    f"request to Binance {what} failed ({type(e).__name__}); check "
                    f"BINANCE_BASE_URL={self.base_url}"
                ) from e
            else:
                self._observe(response, window)
                return result
            failures += 1
            if failures > self.max_retries:
                raise SourceUnavailableError(
                    f"Binance {what} failed {failures} times (last: {problem}); retry later or "
                    f"check BINANCE_BASE_URL={self.base_url}"
                ) from last
            if wait is None:
                wait = self.backoff(failures)
            log.warning(
                "Binance %s: %s; retrying in %.2f s (attempt %d of %d)",
                what,
                problem,
                wait,
                failures + 1,
                self.max_retries + 1,
            )
            if wait > 0:
                time.sleep(wait)

    def backoff(self, failures: int) -> float:
        """Full-jitter exponential backoff: uniform in ``[0, min(cap, base x 2^(failures-1))]``,
        so clients that failed together do not retry together."""
        return random.uniform(0.0, min(self.backoff_cap, self.backoff_base * 2 ** (failures - 1)))

    def _observe(self, response: requests.Response | None, window: int) -> None:
        if response is None:
            return
        header = response.headers.get("X-MBX-USED-WEIGHT-1M", "").strip()
        if header.isdigit():
            self.limiter.observe_used_weight(int(header), window)

    def _api_error(
        self, e: BinanceAPIException, path: str, params: Mapping[str, Any], what: str
    ) -> tuple[str, float | None]:
        """Translate one error answer: return (problem, wait) when it is worth a retry (``wait``
        None: use the backoff), raise the user-facing error when it is not. A ``Retry-After``
        also pauses the shared budget, so every other user of this IP waits too."""
        status, code = int(e.status_code), int(e.code or 0)
        message = _one_line(e.message or "") if code else "(no Binance error JSON)"
        if status in (418, 429) or code == -1003:
            retry_after = _retry_after(e.response)
            if status == 418:
                ban = retry_after if retry_after is not None else self.max_ban_wait + 1
                self.limiter.pause(ban)
                if ban > self.max_ban_wait:
                    raise SourceUnavailableError(
                        f"Binance has banned this IP for {ban:.0f} s (HTTP 418, code {code}) "
                        f"after too many requests; stop other Binance clients on this host and "
                        f"retry after the ban (waits up to {self.max_ban_wait:g} s on their own)"
                    ) from e
                return f"IP banned for {ban:g} s (HTTP 418)", ban
            if retry_after is not None:
                self.limiter.pause(retry_after)
                return f"rate limited (HTTP {status}), Retry-After {retry_after:g} s", retry_after
            return f"rate limited (HTTP {status}, no Retry-After)", None
        if status >= 500 or code in _TRANSIENT_CODES:
            return f"HTTP {status}" + (f" (code {code}: {message})" if code else ""), None
        if code == -1121:
            symbol = params.get("symbol") or params.get("symbols") or "?"
            raise InvalidInputError(
                f"Binance does not list symbol {symbol!r} (code -1121); check the symbol"
            ) from e
        if code == -1120:
            raise InvalidInputError(
                f"Binance rejected interval {params.get('interval')!r} (code -1120: {message}); "
                f"use one of {', '.join(INTERVAL_MS)}"
            ) from e
        if code in _CREDENTIAL_CODES:
            raise ConfigError(
                f"Binance refused the API credentials for {path} (code {code}: {message}); "
                "check BINANCE_API_KEY and BINANCE_API_SECRET"
            ) from e
        if code == -1021:
            raise ConfigError(
                f"Binance refused the request timestamp (code -1021: {message}); this host's "
                "clock is off, synchronise it (NTP)"
            ) from e
        if status in (404, 405) and not code:
            raise ConfigError(
                f"{self.base_url}/api/v3/{path} answered HTTP {status}: BINANCE_BASE_URL does "
                "not look like a Binance spot API (give scheme and host only)"
            ) from e
        if status == 403:
            raise SourceUnavailableError(
                f"Binance's firewall refused {what} (HTTP 403); retry later from this IP"
            ) from e
        raise InvalidInputError(
            f"Binance refused {what} (HTTP {status}, code {code}: {message})"
        ) from e

    # -- shared helpers ----------------------------------------------------------------------

    def to_wire_time(self, ms: int) -> int:
        """Epoch ms as this client's request time unit expects it."""
        return ms * 1000 if self.time_unit == "MICROSECOND" else ms

    def server_time(self) -> pd.Timestamp:
        """Binance's clock (``/api/v3/time``): what decides whether a candle has closed."""
        answer = self.call("time")
        try:
            value = int(answer["serverTime"])
        except (TypeError, KeyError, ValueError) as e:
            raise DataError(
                f"Binance /api/v3/time answered {_one_line(repr(answer), 80)}; expected "
                '{"serverTime": <epoch ms>}'
            ) from e
        ms = value // 1000 if value >= _US_THRESHOLD else value
        return pd.Timestamp(ms, unit="ms", tz="UTC")


__all__ = ["DEFAULT_BASE_URL", "REQUEST_WEIGHTS", "BinanceRest", "request_weight"]
