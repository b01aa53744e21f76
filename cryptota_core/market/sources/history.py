"""Binance history from the cheapest place that has it.

data.binance.vision serves whole months (and recent days) as one zip each, with no request weight;
the REST API costs weight per 1000 candles but knows the last few days, which the archive
publishes only a day or so later. :class:`HistorySource` reads every file the archive has for the
window and asks REST only for the days no archive file covers, then combines the two into one
candle frame. Both are Binance's own data (``exchange="binance"``), so they agree where they
meet; if they ever overlap, the archive's verified copy wins.

A day covered by an archive file stays as the file has it: candles absent from a file are an
exchange outage (a gap), not a reason to ask REST, which would answer the same gap. A symbol that
is no longer ``TRADING`` (delisted) keeps its archive history; REST is not asked for the rest.
"""

from __future__ import annotations

import logging
import re

import pandas as pd

from cryptota_core.errors import ConfigError
from cryptota_core.market.frame import empty_candle_frame, normalise_symbol
from cryptota_core.market.intervals import parse_interval, parse_window
from cryptota_core.market.sources.archive import ArchiveSource
from cryptota_core.market.sources.binance import BinanceSource

log = logging.getLogger(__name__)

_FILE_PERIOD = re.compile(r"-(\d{4}-\d{2})(-\d{2})?\.zip$")
"""The month (``SYMBOL-1m-2024-01.zip``) or day (``SYMBOL-1m-2024-01-05.zip``) a file covers."""

Span = tuple[pd.Timestamp, pd.Timestamp]


def file_period(name: str) -> Span:
    """The ``[start, end)`` an archive file covers, from its name."""
    match = _FILE_PERIOD.search(name)
    if match is None:
        raise ValueError(f"{name!r} is not an archive kline file name")
    if match.group(2):
        day = pd.Timestamp(match.group(1) + match.group(2), tz="UTC")
        return day, day + pd.Timedelta(days=1)
    month = pd.Timestamp(match.group(1) + "-01", tz="UTC")
    return month, month + pd.offsets.MonthBegin(1)


def uncovered(start: pd.Timestamp, end: pd.Timestamp, covered: list[Span]) -> list[Span]:
    """The parts of ``[start, end)`` no span in ``covered`` reaches, merged and in order."""
    missing: list[Span] = []
    cursor = start
    for lo, hi in sorted(covered):
        if hi <= cursor:
            continue
        if lo > cursor:
            missing.append((cursor, min(lo, end)))
        cursor = max(cursor, hi)
        if cursor >= end:
            break
    if cursor < end:
        missing.append((cursor, end))
    return [(lo, hi) for lo, hi in missing if lo < hi]


class HistorySource:
    """A :class:`~cryptota_core.market.sources.base.CandleSource` combining the Binance archive
    (bulk months and published days) with the REST API (whatever the archive lacks)."""

    exchange = "binance"

    def __init__(self, archive: ArchiveSource, rest: BinanceSource) -> None:
        if archive.exchange != "binance" or rest.exchange != "binance":
            raise ConfigError("HistorySource combines Binance sources only (archive and REST)")
        self.archive = archive
        self.rest = rest

    def __repr__(self) -> str:
        return f"HistorySource({self.archive!r}, {self.rest!r})"

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        now: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Closed candles of ``symbol``/``interval`` opening in ``[start, end)``: archive files
        first, REST for the spans no file covers. ``now`` pins the archive's idea of today (REST
        always uses Binance's clock)."""
        symbol = normalise_symbol(symbol)
        interval = parse_interval(interval)
        start, end = parse_window(start, end)
        frames: list[pd.DataFrame] = []
        covered: list[Span] = []
        for part in self.archive.fetch_iter(symbol, interval, start, end, now=now):
            covered.append(file_period(part.name))
            if len(part.candles):
                frames.append(part.candles)
        archived = len(frames)
        gaps = uncovered(start, end, covered)
        if gaps and covered:
            status = self.rest.listing(symbol).get("status")
            if status != "TRADING":
                # Delisted or halted: the archive's history is all there is.
                log.warning(
                    "%s is %s on Binance, not TRADING; returning the archive's candles only",
                    symbol,
                    status,
                )
                gaps = []
        for lo, hi in gaps:
            log.info(
                "archive has no %s %s for [%s, %s); asking the REST API",
                symbol,
                interval,
                lo.isoformat(),
                hi.isoformat(),
            )
            recent = self.rest.fetch(symbol, interval, lo, hi)
            if len(recent):
                frames.append(recent)
        if not frames:
            return empty_candle_frame()
        combined = pd.concat(frames) if len(frames) > 1 else frames[0]
        if not combined.index.is_monotonic_increasing:
            combined = combined.sort_index(kind="stable")
        duplicated = combined.index.duplicated(keep="first")
        if duplicated.any():
            # Stable sort keeps the archive's row (listed first) ahead of REST's.
            log.info("dropped %d candles both the archive and REST had", int(duplicated.sum()))
            combined = combined[~duplicated]
        log.debug(
            "%s %s: %d archive files, %d REST spans, %d candles",
            symbol,
            interval,
            archived,
            len(gaps),
            len(combined),
        )
        return combined
