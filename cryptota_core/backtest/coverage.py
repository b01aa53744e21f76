"""Does the store cover the window a backtest asked for?

A backtest on fewer candles than asked for is a wrong result without a word: asking for January
to June after ingesting January gives a January backtest that looks like a six-month one. Every
read of stored candles for a backtest, an optimisation, a walk-forward, the ad-hoc job or the
assets goes through :func:`check_coverage`: the window must be covered, up to
:data:`COVERAGE_TOLERANCE` of its candles (real exchange outages are recorded as gaps and never
filled, so a few may be missing), or the read fails naming the covered range and the ingest
command that fills it. Where a partial window is intended, ``allow_partial`` uses what is stored
and says which window that is (the stored result's window is then the one actually used).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from cryptota_core.errors import NoDataError
from cryptota_core.market.frame import SeriesKey
from cryptota_core.market.intervals import expected_count, interval_timedelta

log = logging.getLogger(__name__)

COVERAGE_TOLERANCE = 0.01
"""At most this share of a window's candles may be missing (1 %: about 7 hours of a month of 1m
candles, longer than Binance's recorded outages; a backtest on a window with more missing is
refused unless partial windows are allowed)."""


@dataclass(frozen=True)
class Coverage:
    """How much of ``[start, end)`` the stored candles of ``key`` cover."""

    key: SeriesKey
    start: pd.Timestamp
    end: pd.Timestamp
    expected: int
    stored: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None

    @property
    def missing(self) -> int:
        return max(self.expected - self.stored, 0)

    @property
    def complete_enough(self) -> bool:
        return self.missing <= COVERAGE_TOLERANCE * self.expected

    @property
    def used_window(self) -> str:
        """The window the stored candles span, ``[first open, last close)``."""
        if self.first is None or self.last is None:
            return "no candles"
        width = interval_timedelta(self.key.interval)
        return f"[{_iso(self.first)}, {_iso(self.last + width)})"


def coverage(
    key: SeriesKey, frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> Coverage:
    """The coverage of ``[start, end)`` by ``frame`` (the store's complete candles of ``key``)."""
    width = interval_timedelta(key.interval)
    # Complete candles only: one opening later than end - width would reach past the window.
    expected = expected_count(start, end - width + pd.Timedelta(milliseconds=1), key.interval)
    return Coverage(
        key=key,
        start=start,
        end=end,
        expected=expected,
        stored=len(frame),
        first=frame.index[0] if len(frame) else None,
        last=frame.index[-1] if len(frame) else None,
    )


def check_coverage(
    key: SeriesKey,
    frame: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    allow_partial: bool = False,
) -> Coverage:
    """Refuse (:class:`NoDataError`) a window the stored candles do not cover; with
    ``allow_partial`` log the window actually used instead."""
    found = coverage(key, frame, start, end)
    if found.complete_enough:
        return found
    what = (
        f"{key.symbol} {key.interval} ({key.exchange}): the store has {found.stored:,} of the "
        f"{found.expected:,} candles of [{_iso(start)}, {_iso(end)}), spanning {found.used_window}"
    )
    if allow_partial:
        log.warning("%s; partial window allowed, using %s", what, found.used_window)
        return found
    last_day = (end - pd.Timedelta(microseconds=1)).floor("D") + pd.Timedelta(days=1)
    source = " --source synthetic" if key.exchange == "synthetic" else ""
    raise NoDataError(
        f"{what}; run `cryptota ingest{source} --symbols {key.symbol} --start {start.date()} "
        f"--end {last_day.date()}` to fill it, or allow a partial window (--allow-partial)"
    )


def _iso(moment: pd.Timestamp) -> str:
    return moment.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M") + "Z"
