"""Ingestion: candles from a source into the store, one calendar month per transaction.

The same function serves the CLI (``cryptota ingest``, ``cryptota demo``) and the Dagster
ingestion asset. Every chunk is validated before it is written; a chunk with defects (broken OHLC,
negative volume, candles not yet closed) raises and is not stored, while chunks already written
stay, complete. Gaps are recorded, never filled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from cryptota_core.backtest.cache import ResultCache
from cryptota_core.errors import CryptotaError, DataError, InvalidInputError
from cryptota_core.market.frame import SeriesKey, validate_candles
from cryptota_core.market.intervals import interval_ms, parse_interval
from cryptota_core.market.sources.base import CandleSource
from cryptota_core.settings import Settings
from cryptota_core.storage.candle_store import CandleStore

log = logging.getLogger(__name__)

ProgressCallback = Callable[[SeriesKey, pd.Timestamp, pd.Timestamp, int], None]
"""Called after each stored chunk with (series, chunk start, chunk end, candles received)."""


@dataclass
class IngestReport:
    """What one series' ingestion did over ``[start, end)``."""

    key: SeriesKey
    start: pd.Timestamp
    end: pd.Timestamp
    received: int = 0
    written: int = 0
    expected: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    gaps: list[tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=list)

    @property
    def missing(self) -> int:
        """Candles absent in the recorded gaps."""
        step = pd.Timedelta(milliseconds=interval_ms(self.key.interval))
        return sum((b - a) // step + 1 for a, b in self.gaps)


def month_chunks(
    start: pd.Timestamp, end: pd.Timestamp
) -> Iterator[tuple[pd.Timestamp, pd.Timestamp]]:
    """Split ``[start, end)`` at UTC month boundaries."""
    cursor = start
    while cursor < end:
        next_month = cursor.tz_convert("UTC").replace(
            day=1, hour=0, minute=0, second=0, microsecond=0, nanosecond=0
        ) + pd.offsets.MonthBegin(1)
        chunk_end = min(pd.Timestamp(next_month), end)
        yield cursor, chunk_end
        cursor = chunk_end


def binance_reachable(settings: Settings, timeout: float = 3.0) -> bool:
    """True when the Binance REST API at ``BINANCE_BASE_URL`` answers a ping (one try, short
    timeout: this decides ``source=auto``, it must not stall a run)."""
    from cryptota_core.binance.rest import BinanceRest

    rest = BinanceRest(settings.binance_base_url, timeout=timeout, max_retries=0)
    try:
        rest.call("ping")
    except CryptotaError as e:
        log.info("Binance at %s is not reachable: %s", settings.binance_base_url, e)
        return False
    finally:
        rest.close()
    return True


def resolve_source_name(name: str, settings: Settings) -> str:
    """``auto`` becomes ``binance`` when Binance answers, otherwise ``synthetic`` (announced
    loudly by the caller: synthetic data is never passed off as market data)."""
    if name != "auto":
        return name
    if binance_reachable(settings):
        return "binance"
    log.warning(
        "source=auto: Binance at %s is not reachable; using SYNTHETIC data (exchange 'synthetic')",
        settings.binance_base_url,
    )
    return "synthetic"


def open_source(name: str, settings: Settings) -> CandleSource:
    """The candle source called ``name`` configured from ``settings``: ``binance`` is the REST
    API (paged, rate-limited), ``archive`` data.binance.vision; both store exchange
    ``binance``. ``cryptota_core.market.sources.history.HistorySource`` combines the two for
    bulk history."""
    if name == "auto":
        name = resolve_source_name(name, settings)
    if name == "synthetic":
        from cryptota_core.market.sources.synthetic import SyntheticSource

        return SyntheticSource(seed=settings.synthetic_seed)
    if name == "archive":
        from cryptota_core.market.sources.archive import ArchiveSource

        return ArchiveSource(settings.archive_url)
    if name == "binance":
        from cryptota_core.market.sources.binance import BinanceSource

        return BinanceSource.from_settings(settings)
    raise InvalidInputError(f"unknown source {name!r}: use auto, binance, archive or synthetic")


def ingest_series(
    store: CandleStore,
    source: CandleSource,
    symbol: str,
    interval: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    now: pd.Timestamp | None = None,
    on_chunk: ProgressCallback | None = None,
    cache: ResultCache | None = None,
) -> IngestReport:
    """Fetch ``[start, end)`` of one series from ``source``, validate and upsert it month by month,
    and record its gaps."""
    key = SeriesKey(exchange=source.exchange, symbol=symbol, interval=parse_interval(interval))
    report = IngestReport(key=key, start=start, end=end)
    for chunk_start, chunk_end in month_chunks(start, end):
        frame = source.fetch(key.symbol, key.interval, chunk_start, chunk_end)
        check = validate_candles(frame, key.interval, start=chunk_start, end=chunk_end, now=now)
        if not check.ok:
            raise DataError(
                f"{key.symbol} {key.interval} from {source.exchange} in "
                f"[{chunk_start.isoformat()}, {chunk_end.isoformat()}) failed validation: "
                f"{'; '.join(check.problems())}; nothing of this chunk was stored"
            )
        outside = (frame.index < chunk_start) | (frame.index >= chunk_end)
        if outside.any():
            frame = frame[~outside]
        result = store.upsert(key, frame)
        store.record_gaps(key, check, chunk_start, chunk_end)
        report.received += result.received
        report.written += result.written
        report.expected += check.expected_rows or 0
        report.gaps.extend(check.gaps)
        if len(frame):
            report.first = report.first if report.first is not None else frame.index[0]
            report.last = frame.index[-1]
        if on_chunk:
            on_chunk(key, chunk_start, chunk_end, result.received)
    if cache is not None and report.written:
        # New or changed candles: cached backtests of this symbol describe other data now.
        cache.invalidate_symbol(key.exchange, key.symbol)
    log.info(
        "%s: %d candles received, %d new or changed stored in [%s, %s)",
        key,
        report.received,
        report.written,
        start.isoformat(),
        end.isoformat(),
    )
    if report.gaps:
        log.warning(
            "%s: %d gaps in [%s, %s) recorded (not filled)",
            key,
            len(report.gaps),
            start.isoformat(),
            end.isoformat(),
        )
    return report


def ingest(
    store: CandleStore,
    source: CandleSource,
    symbols: list[str],
    interval: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    now: pd.Timestamp | None = None,
    on_chunk: ProgressCallback | None = None,
    cache: ResultCache | None = None,
) -> list[IngestReport]:
    """:func:`ingest_series` for each symbol, in order."""
    return [
        ingest_series(
            store, source, symbol, interval, start, end, now=now, on_chunk=on_chunk, cache=cache
        )
        for symbol in symbols
    ]
