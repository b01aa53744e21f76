"""Bulk history from the Binance public data archive (data.binance.vision).

The archive keeps one zip per symbol, interval and month, and one per day for recent days (and
for the days of the current month, which has no monthly file yet). Each zip holds one kline CSV
and may sit beside a ``.CHECKSUM`` file with its SHA-256. We read, for every month the window
touches, the monthly file when it exists and otherwise that month's daily files; a day in neither
is a gap, exactly as an exchange outage is (DESIGN §7).

The same layout under a ``file://`` directory works offline and in tests. Over HTTP a 404 means
"absent"; 5xx, 429 and timeouts are retried with exponential backoff before giving up with
:class:`SourceUnavailableError`, which the orchestrator's retry policy handles.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlparse

import pandas as pd
import requests

from cryptota_core.errors import ConfigError, DataError, SourceUnavailableError
from cryptota_core.market.binance_csv import read_kline_csv
from cryptota_core.market.frame import empty_candle_frame, normalise_candles, normalise_symbol
from cryptota_core.market.intervals import parse_interval, parse_window, to_utc_timestamp

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 60.0


class ArchiveFile(NamedTuple):
    """One archive file that was found: its name and its candles inside the requested window."""

    name: str
    candles: pd.DataFrame


class ArchiveSource:
    """A :class:`~cryptota_core.market.sources.base.CandleSource` over data.binance.vision (or a
    ``file://`` directory laid out the same way).

    ``on_progress`` is called with each file's name once it has been read and verified, so a CLI
    can advance a progress bar per file. ``retries`` and ``backoff`` (seconds, doubled per attempt,
    with jitter) only matter over HTTP.
    """

    exchange = "binance"

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 30,
        retries: int = 3,
        backoff: float = 0.5,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https", "file"):
            raise ConfigError(
                f"archive URL {base_url!r} is neither http(s):// nor file://: set "
                "CRYPTOTA_ARCHIVE_URL to https://data.binance.vision or file:///path/to/mirror"
            )
        self.base_url = base_url.rstrip("/")
        self._root = Path(unquote(parsed.path)) if parsed.scheme == "file" else None
        self._session = session
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.on_progress = on_progress

    def __repr__(self) -> str:
        return f"ArchiveSource({self.base_url!r})"

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        now: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Candles of ``symbol``/``interval`` opening in ``[start, end)``. All files are verified
        before anything is returned: a checksum mismatch or a malformed file raises
        :class:`DataError` and returns nothing."""
        frames = [part.candles for part in self.fetch_iter(symbol, interval, start, end, now=now)]
        frames = [f for f in frames if len(f)]
        if not frames:
            return empty_candle_frame()
        combined = pd.concat(frames) if len(frames) > 1 else frames[0]
        if combined.index.is_monotonic_increasing and combined.index.is_unique:
            return combined
        return normalise_candles(combined)

    def fetch_iter(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        now: pd.Timestamp | None = None,
    ) -> Iterator[ArchiveFile]:
        """Yield the archive files of the window one by one, in time order, each already verified
        and cut to ``[start, end)``: lets a caller store month by month and show progress. Files
        for days that have not begun by ``now`` are not asked for."""
        symbol = normalise_symbol(symbol)
        interval = parse_interval(interval)
        start_ts, end_ts = parse_window(start, end)
        now_ts = pd.Timestamp.now(tz="UTC") if now is None else to_utc_timestamp(now)
        if self._root is not None and not self._root.is_dir():
            raise ConfigError(
                f"archive directory {self._root} (from {self.base_url}) does not exist: point "
                "CRYPTOTA_ARCHIVE_URL at a directory laid out like data.binance.vision"
            )
        stop = min(end_ts, now_ts)
        month = start_ts.floor("D").replace(day=1)
        while month < stop:
            next_month = month + pd.offsets.MonthBegin(1)
            monthly = self._read(
                f"data/spot/monthly/klines/{symbol}/{interval}/"
                f"{symbol}-{interval}-{month:%Y-%m}.zip",
                start_ts,
                end_ts,
            )
            if monthly is not None:
                yield monthly
            else:
                day = max(month, start_ts.floor("D"))
                while day < min(next_month, stop):
                    daily = self._read(
                        f"data/spot/daily/klines/{symbol}/{interval}/"
                        f"{symbol}-{interval}-{day:%Y-%m-%d}.zip",
                        start_ts,
                        end_ts,
                    )
                    if daily is not None:
                        yield daily
                    day += pd.Timedelta(days=1)
            month = next_month

    def _read(self, path: str, start: pd.Timestamp, end: pd.Timestamp) -> ArchiveFile | None:
        """Download, verify and parse one zip; ``None`` when the archive does not have it."""
        name = path.rsplit("/", 1)[-1]
        content = self._get(path)
        if content is None:
            log.debug("archive has no %s", path)
            return None
        checksum = self._get(path + ".CHECKSUM")
        if checksum is not None:
            _verify(name, content, checksum)
        else:
            log.debug("archive has no checksum for %s; not verified", path)
        candles = read_kline_csv(io.BytesIO(content), name=name)
        candles = candles[(candles.index >= start) & (candles.index < end)]
        if self.on_progress is not None:
            self.on_progress(name)
        return ArchiveFile(name, candles)

    def _get(self, path: str) -> bytes | None:
        if self._root is not None:
            try:
                return (self._root / path).read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as e:
                raise SourceUnavailableError(
                    f"cannot read {self._root / path}: {e.strerror}; check the archive mirror"
                ) from e
        return self._get_http(f"{self.base_url}/{path}")

    def _get_http(self, url: str) -> bytes | None:
        if self._session is None:
            self._session = requests.Session()
        problem = ""
        last_error: Exception | None = None
        retry_after: float | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
                log.info("retrying %s after %s (attempt %d)", url, problem, attempt + 1)
            try:
                response = self._session.get(url, timeout=self.timeout)
            except (requests.Timeout, requests.ConnectionError) as e:
                problem, last_error, retry_after = type(e).__name__, e, None
                continue
            except requests.RequestException as e:
                raise SourceUnavailableError(f"archive request for {url} failed: {e}") from e
            if response.status_code == 200:
                return response.content
            if response.status_code == 404:
                return None
            if response.status_code not in _RETRYABLE_STATUS:
                raise SourceUnavailableError(
                    f"archive answered HTTP {response.status_code} for {url}; check "
                    "CRYPTOTA_ARCHIVE_URL"
                )
            problem, last_error = f"HTTP {response.status_code}", None
            header = response.headers.get("Retry-After", "").strip()
            retry_after = float(header) if header.isdigit() else None
        raise SourceUnavailableError(
            f"archive unreachable: {url} failed {self.retries + 1} times (last: {problem}); "
            "retry later or check CRYPTOTA_ARCHIVE_URL"
        ) from last_error

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter, or the server's Retry-After (capped) when longer."""
        delay = self.backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, _MAX_RETRY_AFTER_S))
        return delay


def _verify(name: str, content: bytes, checksum_file: bytes) -> None:
    """Compare the zip's SHA-256 with its ``.CHECKSUM`` (``"<hex>  <file name>"``)."""
    fields = checksum_file.decode("utf-8", errors="replace").split()
    expected = fields[0].lower() if fields else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise DataError(
            f"{name}.CHECKSUM is malformed: expected '<sha256 hex>  {name}'; the archive copy "
            "is damaged, re-download it"
        )
    actual = hashlib.sha256(content).hexdigest()
    if actual != expected:
        raise DataError(
            f"{name} fails its checksum (sha256 {actual[:12]}…, CHECKSUM says {expected[:12]}…): "
            "the download or the archive copy is corrupt; nothing was loaded, retry the ingest"
        )
