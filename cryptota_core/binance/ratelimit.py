"""Request-weight budgets: how many Binance requests this host may still send this minute.

Binance limits each IP, not each process, by *request weight*: every REST route costs a weight
(klines 2, exchangeInfo 20, ...) and the sum per clock minute must stay under the published limit
(6000). Going over earns HTTP 429, and ignoring 429s earns an IP ban (418) of minutes to days. A
Dagster deployment runs many processes behind one IP, so the budget has to be shared:

- :class:`RedisWeightLimiter` keeps the count of the current window in Redis, updated by one Lua
  script per call, so every process on the host draws from the same budget. The window is taken
  from Redis' own clock (``TIME``), one clock for all processes.
- :class:`LocalWeightLimiter` is the same budget for one process (thread-safe), for the embedded
  default without Redis and as the fallback when Redis goes away.

Both keep ``headroom`` (default 80 %) of the limit for themselves, leaving the rest for requests
they cannot see (another tool on the same IP, clock skew between us and Binance). Both also absorb
the server's own count (``X-MBX-USED-WEIGHT-1M``) through :meth:`observe_used_weight`, and a
429/418 ``Retry-After`` through :meth:`pause`, which stops every user of the budget, not only the
one that was told.

Windows are aligned to the epoch like Binance's (a 1-minute window starts every minute), so the
limiter and the exchange roll over together. ``window_seconds`` is configurable only so tests can
use short windows; production keeps 60.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cryptota_core.errors import InvalidInputError
from cryptota_core.redact import mask_url_password
from cryptota_core.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_LIMIT_PER_MINUTE = 6000
"""Binance spot's ``REQUEST_WEIGHT`` limit per IP and minute (``exchangeInfo.rateLimits``)."""

DEFAULT_HEADROOM = 0.8
DEFAULT_WINDOW_SECONDS = 60.0
_SLACK_SECONDS = 0.005
"""Sleep this much past a window boundary, so the next attempt lands in the new window."""


@runtime_checkable
class WeightLimiter(Protocol):
    """What :class:`~cryptota_core.market.sources.binance.BinanceSource` needs from a budget."""

    limit_per_minute: int
    headroom: float
    window_seconds: float

    @property
    def capacity(self) -> int:
        """Weight this limiter hands out per window: ``floor(limit x headroom)``."""
        ...

    def acquire(self, weight: int) -> int:
        """Block until ``weight`` fits in the current window, take it, and return the window's
        index (epoch seconds // window length), to be passed back to
        :meth:`observe_used_weight`."""
        ...

    def observe_used_weight(self, used: int, window: int | None = None) -> None:
        """Raise the count of ``window`` (default: the current one) to ``used`` if the server
        reports more than we counted (other clients on the same IP). Stale windows are ignored."""
        ...

    def pause(self, seconds: float) -> None:
        """Hand out nothing for ``seconds`` (a 429/418 ``Retry-After``), to every user."""
        ...

    def used(self) -> int:
        """Weight taken in the current window by every user of this budget."""
        ...

    def close(self) -> None: ...


def _check(limit_per_minute: int, headroom: float, window_seconds: float) -> int:
    if limit_per_minute <= 0:
        raise InvalidInputError(
            f"weight limit must be a positive number per window, got {limit_per_minute!r}"
        )
    if not 0 < headroom <= 1:
        raise InvalidInputError(f"headroom must be in (0, 1], e.g. 0.8; got {headroom!r}")
    if window_seconds <= 0:
        raise InvalidInputError(f"window must be positive seconds, got {window_seconds!r}")
    capacity = math.floor(limit_per_minute * headroom)
    if capacity < 1:
        raise InvalidInputError(
            f"limit {limit_per_minute} x headroom {headroom} leaves no weight to spend"
        )
    return capacity


def _too_heavy(weight: int, capacity: int) -> InvalidInputError:
    return InvalidInputError(
        f"a request of weight {weight} can never fit a budget of {capacity} per window; "
        "raise the limit or use a lighter request"
    )


class LocalWeightLimiter:
    """A weight budget for one process, shared by its threads.

    ``clock`` and ``sleep`` exist for tests; the clock must be wall time (epoch seconds), because
    windows are aligned with the exchange's clock minutes."""

    def __init__(
        self,
        limit_per_minute: int = DEFAULT_LIMIT_PER_MINUTE,
        *,
        headroom: float = DEFAULT_HEADROOM,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._capacity = _check(limit_per_minute, headroom, window_seconds)
        self.limit_per_minute = limit_per_minute
        self.headroom = headroom
        self.window_seconds = window_seconds
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._window = -1
        self._used = 0
        self._paused_until = 0.0

    def __repr__(self) -> str:
        return (
            f"LocalWeightLimiter(limit_per_minute={self.limit_per_minute}, "
            f"headroom={self.headroom}, window_seconds={self.window_seconds})"
        )

    @property
    def capacity(self) -> int:
        return self._capacity

    def _roll(self, now: float) -> int:
        window = int(now // self.window_seconds)
        if window != self._window:
            self._window, self._used = window, 0
        return window

    def used(self) -> int:
        """Weight taken in the current window (for logs and tests)."""
        with self._lock:
            self._roll(self._clock())
            return self._used

    def acquire(self, weight: int) -> int:
        if weight > self._capacity:
            raise _too_heavy(weight, self._capacity)
        while True:
            with self._lock:
                now = self._clock()
                if now < self._paused_until:
                    wait = self._paused_until - now
                else:
                    window = self._roll(now)
                    if self._used + weight <= self._capacity:
                        self._used += weight
                        return window
                    wait = (window + 1) * self.window_seconds - now
            log.debug("weight budget spent; waiting %.3f s for the next window", wait)
            self._sleep(wait + _SLACK_SECONDS)

    def observe_used_weight(self, used: int, window: int | None = None) -> None:
        with self._lock:
            current = self._roll(self._clock())
            if window is not None and window != current:
                return
            if used > self._used:
                self._used = int(used)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(seconds, 0.0))

    def close(self) -> None:
        return None


# One atomic step per call, on Redis' clock. Windowed keys expire on their own after two windows.
# Keys are derived from KEYS[1] inside the script, which a Redis Cluster would refuse; the limiter
# targets one Redis (the cache's), where this is fine.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = tonumber(redis.call('GET', KEYS[1] .. ':paused') or '0')
if now < paused then
  return {0, paused - now, -1}
end
local window_ms = tonumber(ARGV[3])
local window = math.floor(now / window_ms)
local key = KEYS[1] .. ':w:' .. window
local used = tonumber(redis.call('GET', key) or '0')
local weight = tonumber(ARGV[1])
if used + weight <= tonumber(ARGV[2]) then
  used = redis.call('INCRBY', key, weight)
  redis.call('PEXPIRE', key, 2 * window_ms)
  return {1, window, used}
end
return {0, (window + 1) * window_ms - now, window}
"""

_OBSERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window_ms = tonumber(ARGV[2])
local window = math.floor(now / window_ms)
local wanted = tonumber(ARGV[3])
if wanted >= 0 and wanted ~= window then
  return 0
end
local key = KEYS[1] .. ':w:' .. window
local used = tonumber(redis.call('GET', key) or '0')
local seen = tonumber(ARGV[1])
if seen > used then
  redis.call('SET', key, seen, 'PX', 2 * window_ms)
  return 1
end
return 0
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1] .. ':paused') or '0')
if until_ms > current then
  redis.call('SET', KEYS[1] .. ':paused', until_ms, 'PX', tonumber(ARGV[1]) + 1000)
end
return until_ms
"""

_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class RedisWeightLimiter:
    """A weight budget shared by every process that uses the same Redis and ``scope``.

    ``scope`` names the budget: one per egress IP (the default, ``binance``, suits one host or a
    NAT gateway). If Redis cannot be reached the limiter logs one warning and continues as a
    :class:`LocalWeightLimiter` for the rest of the process: ingestion keeps going, each process
    still stays within the budget on its own, and the server's 429s are still honoured."""

    def __init__(
        self,
        redis_url: str,
        limit_per_minute: int = DEFAULT_LIMIT_PER_MINUTE,
        *,
        headroom: float = DEFAULT_HEADROOM,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        scope: str = "binance",
        timeout: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._capacity = _check(limit_per_minute, headroom, window_seconds)
        self.limit_per_minute = limit_per_minute
        self.headroom = headroom
        self.window_seconds = window_seconds
        self.scope = scope
        self._prefix = f"cryptota:weight:{scope}"
        self._window_ms = max(1, round(window_seconds * 1000))
        self._sleep = sleep
        self._client = redis.Redis.from_url(
            redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        self._acquire = self._client.register_script(_ACQUIRE)
        self._observe = self._client.register_script(_OBSERVE)
        self._pause = self._client.register_script(_PAUSE)
        self._fallback: LocalWeightLimiter | None = None
        self._fallback_lock = threading.Lock()
        self._label = mask_url_password(redis_url)

    def __repr__(self) -> str:
        return (
            f"RedisWeightLimiter({self._label!r}, limit_per_minute={self.limit_per_minute}, "
            f"headroom={self.headroom}, window_seconds={self.window_seconds}, "
            f"scope={self.scope!r})"
        )

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def shared(self) -> bool:
        """False once Redis failed and this process fell back to a local budget."""
        return self._fallback is None

    def _fall_back(self, error: BaseException) -> LocalWeightLimiter:
        with self._fallback_lock:
            if self._fallback is None:
                log.warning(
                    "shared weight budget at %s is unavailable (%s); this process continues "
                    "with its own budget of %d per %.0f s",
                    self._label,
                    str(error).strip().splitlines()[0] if str(error).strip() else type(error),
                    self._capacity,
                    self.window_seconds,
                )
                self._fallback = LocalWeightLimiter(
                    self.limit_per_minute,
                    headroom=self.headroom,
                    window_seconds=self.window_seconds,
                    sleep=self._sleep,
                )
            return self._fallback

    def used(self) -> int:
        """Weight taken in the current window across all processes (for logs and tests)."""
        if self._fallback is not None:
            return self._fallback.used()
        now_s, now_us = self._client.time()
        window = (int(now_s) * 1000 + int(now_us) // 1000) // self._window_ms
        value: Any = self._client.get(f"{self._prefix}:w:{window}")
        return int(value or 0)

    def acquire(self, weight: int) -> int:
        if weight > self._capacity:
            raise _too_heavy(weight, self._capacity)
        while True:
            if self._fallback is not None:
                return self._fallback.acquire(weight)
            try:
                granted, value, _ = self._acquire(
                    keys=[self._prefix], args=[weight, self._capacity, self._window_ms]
                )
            except _UNAVAILABLE as e:
                self._fall_back(e)
                continue
            if int(granted):
                return int(value)
            wait = int(value) / 1000
            log.debug("shared weight budget spent; waiting %.3f s", wait)
            self._sleep(wait + _SLACK_SECONDS)

    def observe_used_weight(self, used: int, window: int | None = None) -> None:
        if self._fallback is not None:
            self._fallback.observe_used_weight(used, window)
            return
        try:
            self._observe(
                keys=[self._prefix],
                args=[int(used), self._window_ms, -1 if window is None else int(window)],
            )
        except _UNAVAILABLE as e:
            self._fall_back(e).observe_used_weight(used, window)

    def pause(self, seconds: float) -> None:
        if self._fallback is not None:
            self._fallback.pause(seconds)
            return
        try:
            self._pause(keys=[self._prefix], args=[max(0, math.ceil(seconds * 1000))])
        except _UNAVAILABLE as e:
            self._fall_back(e).pause(seconds)

    def close(self) -> None:
        self._client.close()


def open_rate_limiter(
    settings: Settings,
    *,
    limit_per_minute: int = DEFAULT_LIMIT_PER_MINUTE,
    headroom: float = DEFAULT_HEADROOM,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
) -> RedisWeightLimiter | LocalWeightLimiter:
    """The budget the settings ask for: shared through ``CRYPTOTA_REDIS_URL`` when set, else
    per process. Nothing connects here; the first request does."""
    if settings.redis_url:
        return RedisWeightLimiter(
            settings.redis_url,
            limit_per_minute,
            headroom=headroom,
            window_seconds=window_seconds,
        )
    return LocalWeightLimiter(limit_per_minute, headroom=headroom, window_seconds=window_seconds)
