"""Request-weight budgets: the per-process limiter on a fake clock, the Redis-shared one against
the throwaway redis-server, and several processes hammering the local exchange through
BinanceSource on one shared budget without ever drawing a 429."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections import defaultdict
from typing import Any

import pandas as pd
import pytest

from cryptota_core.binance.ratelimit import (
    LocalWeightLimiter,
    RedisWeightLimiter,
    WeightLimiter,
    open_rate_limiter,
)
from cryptota_core.errors import InvalidInputError
from cryptota_core.settings import load_settings
from tests.exchange.server import LocalExchange
from tests.services import free_port


class FakeClock:
    """Wall time that moves only when the limiter sleeps."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class WouldBlockError(Exception):
    """Raised by a sleep that must not happen: the limiter would have waited."""


def never_sleep(seconds: float) -> None:
    raise WouldBlockError(f"would wait {seconds:.3f} s")


def local(clock: FakeClock, limit: int = 10, **options: Any) -> LocalWeightLimiter:
    return LocalWeightLimiter(limit, clock=clock, sleep=clock.sleep, **options)


def test_local_limiter_hands_out_the_headroom_then_waits_for_the_next_window() -> None:
    clock = FakeClock(start=600.0 + 12.5)  # 12.5 s into a 60 s window
    limiter = local(clock)  # 10 per window x 0.8 headroom = 8
    assert limiter.capacity == 8
    first = limiter.acquire(5)
    assert limiter.acquire(3) == first
    assert clock.sleeps == []
    assert limiter.acquire(1) == first + 1
    assert sum(clock.sleeps) == pytest.approx(47.5, abs=0.01), "slept to the window boundary"
    assert limiter.used() == 1


def test_local_limiter_absorbs_the_servers_count() -> None:
    clock = FakeClock(start=600.0)
    limiter = local(clock)
    window = limiter.acquire(1)
    limiter.observe_used_weight(7, window)  # other clients on the IP
    assert limiter.used() == 7
    limiter.observe_used_weight(3)  # less than we know of: ignored
    assert limiter.used() == 7
    limiter.observe_used_weight(9, window - 1)  # a stale window: ignored
    assert limiter.used() == 7
    limiter.acquire(1)
    assert clock.sleeps == []
    limiter.acquire(1)  # 7 + 1 + 1 > 8
    assert len(clock.sleeps) == 1


def test_local_limiter_pause_stops_everything() -> None:
    clock = FakeClock(start=600.0)
    limiter = local(clock)
    limiter.pause(2.5)
    limiter.acquire(1)
    assert sum(clock.sleeps) == pytest.approx(2.5, abs=0.01)


def test_a_weight_that_can_never_fit_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="can never fit a budget of 8"):
        local(FakeClock()).acquire(9)
    with pytest.raises(InvalidInputError, match="headroom"):
        LocalWeightLimiter(100, headroom=1.5)


def test_local_limiter_is_thread_safe() -> None:
    limiter = LocalWeightLimiter(20, headroom=0.8, window_seconds=0.25)  # 16 per window
    grants: dict[int, int] = defaultdict(int)
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(12):
            window = limiter.acquire(1)
            with lock:
                grants[window] += 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(grants.values()) == 48
    assert max(grants.values()) <= 16
    assert len(grants) >= 3


def test_redis_limiter_is_shared_between_instances(redis_url: str) -> None:
    # Hour-long windows: the test never straddles a boundary.
    one = RedisWeightLimiter(redis_url, 10, window_seconds=3600, sleep=never_sleep)
    two = RedisWeightLimiter(redis_url, 10, window_seconds=3600, sleep=never_sleep)
    window = one.acquire(5)
    assert two.acquire(3) == window
    assert one.used() == two.used() == 8
    with pytest.raises(WouldBlockError):
        two.acquire(1)
    other_scope = RedisWeightLimiter(
        redis_url, 10, window_seconds=3600, scope="other-ip", sleep=never_sleep
    )
    assert other_scope.acquire(8) == window, "another scope is another budget"


def test_redis_limiter_shares_server_counts_and_pauses(redis_url: str) -> None:
    one = RedisWeightLimiter(redis_url, 100, window_seconds=3600, sleep=never_sleep)
    two = RedisWeightLimiter(redis_url, 100, window_seconds=3600, sleep=never_sleep)
    window = one.acquire(2)
    one.observe_used_weight(79, window)
    assert two.used() == 79
    two.acquire(1)
    with pytest.raises(WouldBlockError):
        two.acquire(1)  # 79 + 1 + 1 > 80

    fresh = RedisWeightLimiter(redis_url, 100, window_seconds=3600, scope="p", sleep=never_sleep)
    fresh.pause(30)
    with pytest.raises(WouldBlockError, match=r"would wait (29|30)\."):
        RedisWeightLimiter(
            redis_url, 100, window_seconds=3600, scope="p", sleep=never_sleep
        ).acquire(1)


def test_redis_limiter_waits_for_the_next_window(redis_url: str) -> None:
    limiter = RedisWeightLimiter(redis_url, 5, headroom=1.0, window_seconds=0.5)
    windows = [limiter.acquire(1) for _ in range(8)]
    assert windows.count(windows[0]) <= 5
    assert windows[-1] > windows[0]


def test_redis_unavailable_falls_back_to_a_local_budget(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisWeightLimiter(
        f"redis://:hunter2@127.0.0.1:{free_port()}/0", 10, timeout=0.5, window_seconds=3600
    )
    with caplog.at_level(logging.WARNING, logger="cryptota_core.binance.ratelimit"):
        limiter.acquire(2)
        limiter.acquire(2)
        limiter.observe_used_weight(5)
    assert not limiter.shared
    assert limiter.used() == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "its own budget" in warnings[0].getMessage()
    assert "hunter2" not in warnings[0].getMessage() and "hunter2" not in repr(limiter)


def test_open_rate_limiter_follows_the_settings(redis_url: str) -> None:
    assert isinstance(open_rate_limiter(load_settings()), LocalWeightLimiter)
    shared = open_rate_limiter(load_settings(redis_url=redis_url), limit_per_minute=1200)
    assert isinstance(shared, RedisWeightLimiter)
    assert shared.capacity == 960
    assert isinstance(shared, WeightLimiter)


# -- several processes, one budget, one exchange ----------------------------------------------

LIMIT, WINDOW = 300, 5.0
DAYS = ("2024-01-01", "2024-01-05")  # 5760 1m candles: 58 pages of 100 per process
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


class HeaderBlindRedisLimiter(RedisWeightLimiter):
    """The shared budget without the server's feedback, as behind a proxy that strips
    ``X-MBX-USED-WEIGHT-1M``: only the cross-process accounting in Redis keeps the IP's total
    in check, which is what this test is about."""

    def observe_used_weight(self, used: int, window: int | None = None) -> None:
        return None


class HeaderBlindLocalLimiter(LocalWeightLimiter):
    """The per-process budget without the server's feedback (the control: it draws 429s)."""

    def observe_used_weight(self, used: int, window: int | None = None) -> None:
        return None


def hammer(url: str, redis_url: str | None, symbol: str, results: Any) -> None:
    """One worker process: fetch four days of 1m candles in 100-candle pages."""
    from cryptota_core.market.sources.binance import BinanceSource

    limiter: WeightLimiter = (
        HeaderBlindRedisLimiter(redis_url, LIMIT, headroom=0.8, window_seconds=WINDOW)
        if redis_url
        else HeaderBlindLocalLimiter(LIMIT, headroom=0.8, window_seconds=WINDOW)
    )
    source = BinanceSource(
        url, rate_limiter=limiter, page_limit=100, backoff_base=0.01, max_retries=20
    )
    try:
        frame = source.fetch(symbol, "1m", pd.Timestamp(DAYS[0]), pd.Timestamp(DAYS[1]))
        results.put((symbol, len(frame)))
    except Exception as e:  # reported to the parent, which fails the test
        results.put((symbol, f"{type(e).__name__}: {e}"))


def run_hammers(exchange: LocalExchange, redis_url: str | None) -> dict[str, Any]:
    """Three processes fetching at once; returns what each reported."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=hammer, args=(exchange.url, redis_url, s, results)) for s in SYMBOLS
    ]
    for worker in workers:
        worker.start()
    outcome = dict(results.get(timeout=90) for _ in workers)
    for worker in workers:
        worker.join(timeout=10)
    return outcome


def test_processes_sharing_a_redis_budget_never_draw_a_429(redis_url: str) -> None:
    with LocalExchange(
        SYMBOLS, now="2024-02-01", weight_limit=LIMIT, window_seconds=WINDOW
    ) as exchange:
        outcome = run_hammers(exchange, redis_url)

        assert outcome == dict.fromkeys(SYMBOLS, 5760)
        assert exchange.count(status=429) == 0 and exchange.count(status=418) == 0
        per_window = exchange.weight_by_window()
        total = sum(per_window.values())
        assert total == 3 * (20 + 1 + 58 * 2), "every request was charged"
        assert total > LIMIT, "more than one window's worth, so the budget had to hold back"
        assert max(per_window.values()) <= LIMIT
        assert len(per_window) >= 2
