"""Candles from the Binance spot REST API: :class:`BinanceSource`, the
:class:`~cryptota_core.market.sources.base.CandleSource` over Binance's spot klines.

Calling the API (client set-up, request weights, retries, error translation, secrets) is
:class:`~cryptota_core.binance.rest.BinanceRest`'s, which :mod:`cryptota_core.market.snapshot`
shares; this module pages klines, checks them and keeps Binance's kline quirks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from pydantic import SecretStr

from cryptota_core.binance.ratelimit import WeightLimiter, open_rate_limiter
from cryptota_core.binance.rest import (
    _US_THRESHOLD,
    DEFAULT_BASE_URL,
    BinanceRest,
    TimeUnit,
    _one_line,
)
from cryptota_core.errors import DataError, InvalidInputError
from cryptota_core.market.frame import (
    CANDLE_COLUMNS,
    candle_frame_from_arrays,
    empty_candle_frame,
    normalise_symbol,
    parse_symbols,
    validate_candles,
)
from cryptota_core.market.intervals import interval_ms, parse_interval, parse_window
from cryptota_core.settings import Settings

log = logging.getLogger(__name__)

MAX_PAGE = 1000
"""Most klines Binance returns per request."""


class _CancelledError(Exception):
    """A sibling fetch of :meth:`BinanceSource.fetch_many` failed; this one stops early."""


class BinanceSource:
    """A :class:`~cryptota_core.market.sources.base.CandleSource` over Binance's spot klines.

    ``fetch`` validates the symbol against ``exchangeInfo`` (status ``TRADING``; cached per
    instance), reads Binance's clock once, pages forward ``page_limit`` candles per request from
    ``start`` and keeps only candles closed by that clock. Gaps (exchange outages) stay gaps. It
    returns the complete, validated window or raises; never a partial frame."""

    exchange = "binance"

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
        page_limit: int = MAX_PAGE,
        time_unit: TimeUnit = "MILLISECOND",
        max_concurrency: int = 4,
    ) -> None:
        if not 1 <= page_limit <= MAX_PAGE:
            raise InvalidInputError(f"page_limit must be 1..{MAX_PAGE} klines, got {page_limit!r}")
        if max_concurrency < 1:
            raise InvalidInputError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self.rest = BinanceRest(
            base_url,
            api_key=api_key,
            api_secret=api_secret,
            rate_limiter=rate_limiter,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            max_ban_wait=max_ban_wait,
            time_unit=time_unit,
        )
        self.page_limit = page_limit
        self.max_concurrency = max_concurrency
        self._symbols: dict[str, dict[str, Any]] = {}
        self._symbols_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, rate_limiter: WeightLimiter | None = None, **options: Any
    ) -> BinanceSource:
        """The source ``BINANCE_BASE_URL``/``BINANCE_API_KEY``/``SECRET`` describe, drawing on the
        shared weight budget when ``CRYPTOTA_REDIS_URL`` is set."""
        return cls(
            settings.binance_base_url,
            api_key=settings.binance_api_key,
            api_secret=settings.binance_api_secret,
            rate_limiter=rate_limiter or open_rate_limiter(settings),
            **options,
        )

    def __repr__(self) -> str:
        return f"BinanceSource({self.rest.base_url!r})"

    def __enter__(self) -> BinanceSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.rest.close()

    @property
    def limiter(self) -> WeightLimiter:
        return self.rest.limiter

    def listing(self, symbol: str) -> dict[str, Any]:
        """``exchangeInfo`` of ``symbol`` whatever its status (fetched once per instance).
        Raises :class:`InvalidInputError` when Binance does not list it (code -1121)."""
        symbol = normalise_symbol(symbol)
        with self._symbols_lock:
            info = self._symbols.get(symbol)
        if info is None:
            answer = self.rest.call("exchangeInfo", {"symbol": symbol})
            listed = answer.get("symbols") if isinstance(answer, dict) else None
            matches = [s for s in listed or () if isinstance(s, dict) and s.get("symbol") == symbol]
            if not matches:
                raise InvalidInputError(
                    f"Binance does not list symbol {symbol!r} (exchangeInfo has no entry); "
                    "check the symbol"
                )
            info = matches[0]
            with self._symbols_lock:
                self._symbols[symbol] = info
        return info

    def symbol_info(self, symbol: str) -> dict[str, Any]:
        """``exchangeInfo`` of a ``TRADING`` symbol. Raises :class:`InvalidInputError` when
        Binance does not list it or lists it with another status (BREAK: delisted or halted)."""
        info = self.listing(symbol)
        status = info.get("status")
        if status != "TRADING":
            raise InvalidInputError(
                f"Binance lists {info.get('symbol')} with status {status} (not TRADING); it has no "
                "live candles to fetch: choose a trading symbol or use --source archive for its "
                "history"
            )
        return info

    def server_time(self) -> pd.Timestamp:
        return self.rest.server_time()

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        now: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """The closed candles of ``symbol``/``interval`` opening in ``[start, end)``. ``now`` is
        ignored: which candles have closed is decided by Binance's server time."""
        return self._fetch(symbol, interval, start, end, None)

    async def fetch_many(
        self,
        symbols: str | Iterable[str],
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
    ) -> dict[str, pd.DataFrame]:
        """:meth:`fetch` for several symbols concurrently (up to ``max_concurrency`` at a time),
        all under this source's weight budget. All or nothing: if one fails, the others stop at
        their next page and the first error is raised."""
        names = parse_symbols(symbols if isinstance(symbols, str) else list(symbols))
        interval = parse_interval(interval)
        parse_window(start, end)
        workers = min(self.max_concurrency, len(names))
        self.rest.reserve(workers)
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cryptota-binance") as pool:
            futures = [
                loop.run_in_executor(
                    pool, functools.partial(self._fetch, name, interval, start, end, cancel)
                )
                for name in names
            ]
            try:
                frames = await asyncio.gather(*futures)
            except BaseException:
                cancel.set()
                await asyncio.gather(*futures, return_exceptions=True)
                raise
        return dict(zip(names, frames, strict=True))

    def _fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        cancel: threading.Event | None,
    ) -> pd.DataFrame:
        symbol = normalise_symbol(symbol)
        interval = parse_interval(interval)
        start, end = parse_window(start, end)
        self.symbol_info(symbol)
        now = self.rest.server_time()
        step = interval_ms(interval)
        now_ms = int(now.value // 1_000_000)
        start_ms = int(start.value // 1_000_000)
        last_ms = min(int(end.value // 1_000_000) - 1, now_ms)  # nothing opens after now
        what = f"{symbol} {interval}"

        opens: list[np.ndarray] = []
        parts: list[dict[str, np.ndarray]] = []
        cursor = start_ms
        while cursor <= last_ms:
            if cancel is not None and cancel.is_set():
                raise _CancelledError(what)
            rows = self.rest.call(
                "klines",
                {
                    "symbol": symbol,
                    "interval": interval,
                    "startTime": self.rest.to_wire_time(cursor),
                    "endTime": self.rest.to_wire_time(last_ms),
                    "limit": self.page_limit,
                },
            )
            open_ms, close_ms, columns = _parse_klines(rows, what)
            if not len(open_ms):
                break
            _check_page(open_ms, cursor, last_ms, step, self.page_limit, what)
            closed = close_ms < now_ms
            finished = not closed.all() or len(open_ms) < self.page_limit
            if not closed.all():
                # Only the newest candle can still be open, and it ends the data.
                keep = int(np.argmin(closed))
                if closed[keep:].any():
                    raise DataError(
                        f"Binance returned an unfinished {what} candle before closed ones; "
                        "nothing was returned, retry the fetch"
                    )
                open_ms, columns = open_ms[:keep], {c: v[:keep] for c, v in columns.items()}
            if len(open_ms):
                opens.append(open_ms)
                parts.append(columns)
            if finished:
                break
            cursor = int(open_ms[-1]) + step

        if not opens:
            frame = empty_candle_frame()
        else:
            frame = candle_frame_from_arrays(
                np.concatenate(opens),
                {c: np.concatenate([p[c] for p in parts]) for c in CANDLE_COLUMNS},
            )
        closed_until = pd.Timestamp((now_ms // step) * step, unit="ms", tz="UTC")
        report = validate_candles(
            frame, interval, start=start, end=max(start, min(end, closed_until)), now=now
        )
        if not report.ok:
            raise DataError(
                f"Binance {what} in [{start.isoformat()}, {end.isoformat()}) failed validation: "
                f"{'; '.join(report.problems())}; nothing was returned"
            )
        if report.gaps:
            log.info(
                "Binance %s: %d candles missing in %d gaps (exchange outages); left as gaps",
                what,
                report.missing_candles,
                len(report.gaps),
            )
        return frame


def _parse_klines(rows: Any, what: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Open and close times (epoch ms, µs normalised) and candle columns of a klines answer."""
    if not isinstance(rows, list):
        raise DataError(
            f"Binance answered klines {what} with {type(rows).__name__}, not a list of klines; "
            "nothing was returned"
        )
    empty = np.empty(0, dtype="int64")
    if not rows:
        return empty, empty, {c: np.empty(0) for c in CANDLE_COLUMNS}
    bad = next((r for r in rows if not isinstance(r, list) or len(r) != 12), None)
    if bad is not None:
        raise DataError(
            f"Binance klines {what} has a row {_one_line(repr(bad), 80)}; expected 12 fields "
            "[open_time, open, high, low, close, volume, close_time, quote_volume, trades, "
            "taker_buy_base, taker_buy_quote, ignore]"
        )
    table = np.array(rows, dtype=object)
    try:
        open_ms = table[:, 0].astype("int64")
        close_ms = table[:, 6].astype("int64")
        columns = {
            "open": table[:, 1].astype("float64"),
            "high": table[:, 2].astype("float64"),
            "low": table[:, 3].astype("float64"),
            "close": table[:, 4].astype("float64"),
            "volume": table[:, 5].astype("float64"),
            "quote_volume": table[:, 7].astype("float64"),
            "trades": table[:, 8].astype("int64"),
            "taker_buy_base": table[:, 9].astype("float64"),
            "taker_buy_quote": table[:, 10].astype("float64"),
        }
    except (TypeError, ValueError) as e:
        raise DataError(
            f"Binance klines {what} holds a non-numeric field ({_one_line(str(e), 80)}); "
            "nothing was returned"
        ) from e
    # X-MBX-TIME-UNIT: MICROSECOND answers in µs; detected per value, as in the archive files.
    open_ms = np.where(open_ms >= _US_THRESHOLD, open_ms // 1000, open_ms)
    close_ms = np.where(close_ms >= _US_THRESHOLD, close_ms // 1000, close_ms)
    return open_ms, close_ms, columns


def _check_page(
    open_ms: np.ndarray, cursor: int, last_ms: int, step: int, limit: int, what: str
) -> None:
    """A page must be what was asked for: in range, ascending, on the interval grid."""
    problem = ""
    if len(open_ms) > limit:
        problem = f"{len(open_ms)} klines for a limit of {limit}"
    elif open_ms[0] < cursor or open_ms[-1] > last_ms:
        problem = "klines outside the requested time range"
    elif len(open_ms) > 1 and not (np.diff(open_ms) > 0).all():
        problem = "klines out of time order or duplicated"
    elif (open_ms % step).any():
        problem = f"klines off the {what.split()[-1]} grid"
    if problem:
        raise DataError(f"Binance returned {problem} for {what}; nothing was returned")


__all__ = ["MAX_PAGE", "BinanceSource"]
