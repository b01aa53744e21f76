"""The candles a backtest or a search runs on, read from the store or a Binance kline CSV and
checked, with where they came from: the one reading path the CLI, the pipeline and research
share."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cryptota_core.backtest.coverage import check_coverage
from cryptota_core.errors import DataError, InvalidInputError, NoDataError
from cryptota_core.market.binance_csv import read_kline_rows
from cryptota_core.market.frame import (
    EXCHANGES,
    SeriesKey,
    distinct_sorted,
    first_defect,
    format_time,
    frame_fingerprint,
    normalise_candles,
    validate_candles,
)
from cryptota_core.market.intervals import INTERVAL_MS, parse_interval
from cryptota_core.settings import load_settings

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported by whoever opened it, not for a CSV
    from cryptota_core.storage.candle_store import CandleStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CandleInput:
    """Candles to backtest on and where they came from (for tracing every number back)."""

    frame: pd.DataFrame
    key: SeriesKey | None
    interval: str
    fingerprint: str
    origin: str


def infer_interval(frame: pd.DataFrame) -> str:
    """The interval of a candle frame, from the most common spacing of its distinct open times
    (in any order), which a few gaps or stray candles cannot change."""
    step = _common_step_ms(frame)
    if step is None:
        raise InvalidInputError("need at least two candles to infer the interval; pass --interval")
    for name, ms in INTERVAL_MS.items():
        if ms == step:
            return name
    raise InvalidInputError(f"candles are {step} ms apart, which is not a supported interval")


def _common_step_ms(frame: pd.DataFrame) -> int | None:
    """The most common step between consecutive distinct open times (None for fewer than two)."""
    times = frame["open_time"] if "open_time" in frame.columns else frame.index
    ms = distinct_sorted(pd.DatetimeIndex(times).as_unit("ns").asi8 // 1_000_000)
    if len(ms) < 2:
        return None
    steps = np.diff(ms)
    if bool((steps == steps[0]).all()):
        return int(steps[0])  # no gap: the common case needs no count
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])


def candles_from_csv(
    path: str | Path,
    interval: str | None = None,
    *,
    now: pd.Timestamp | None = None,
    max_bytes: int | None = None,
) -> CandleInput:
    """Candles from a Binance kline CSV (as data.binance.vision ships it), checked as ingestion
    checks what it stores, because a backtest on broken candles is a wrong result that looks
    like a right one.

    ``interval`` defaults to the file's most common spacing; a declared one must be that
    spacing (an hourly file backtested as 1m would be 59 gaps an hour). With the file's candles
    in file order, :func:`~cryptota_core.market.frame.validate_candles` (the check ingestion
    runs before it stores a chunk) must find no repeated open times, no open time off the
    interval grid, no broken OHLC (``low <= min(open, close) <= max(open, close) <= high``), no
    negative volume and no candle not yet closed at ``now`` (default: the present); otherwise
    :class:`DataError` names the first offending candle in the file, before any backtest runs.

    Gaps (missing candles) pass: in a real Binance export they are exchange outages, which the
    store records and never fills either; they are logged with a warning and the backtest runs
    on the candles the file has. Unsorted rows are sorted, with a warning, as before.

    The file is read no further than ``max_bytes`` (default ``CRYPTOTA_CSV_MAX_BYTES``), and a
    character device such as ``/dev/zero`` is refused unread (see
    :func:`~cryptota_core.market.binance_csv.read_kline_rows`).
    """
    limit = load_settings().csv_max_bytes if max_bytes is None else max_bytes
    label = str(path)
    rows = read_kline_rows(path, max_bytes=limit)
    resolved = _csv_interval(rows, interval, label)
    report = validate_candles(rows, resolved, now=now)
    # Out-of-order rows are safe to sort (and always were); every other defect is refused.
    defect = first_defect(rows, report, ignore=("non_monotonic",))
    if defect is not None:
        raise DataError(f"{label}: {defect}")
    frame = normalise_candles(rows) if report.non_monotonic else rows
    if report.gaps:
        first_gap = report.gaps[0]
        log.warning(
            "%s: %s, %d missing %s candles in all (the first from %s to %s); backtesting the "
            "candles the file has (gaps are exchange outages: recorded, never filled)",
            label,
            "1 gap" if len(report.gaps) == 1 else f"{len(report.gaps):,} gaps",
            report.missing_candles,
            resolved,
            format_time(first_gap[0]),
            format_time(first_gap[1]),
        )
    return CandleInput(frame, None, resolved, frame_fingerprint(frame), f"csv:{Path(path).name}")


def _csv_interval(rows: pd.DataFrame, declared: str | None, label: str) -> str:
    """The declared interval, if it is the spacing of the file's candles, else the inferred
    one."""
    if declared is None:
        return infer_interval(rows)
    interval = parse_interval(declared)
    step = _common_step_ms(rows)
    if step is not None and step != INTERVAL_MS[interval]:
        spacing = next((k for k, v in INTERVAL_MS.items() if v == step), f"{step:,} ms")
        raise InvalidInputError(
            f"--interval {interval} does not match {label}: its candles are mostly {spacing} "
            "apart; pass the file's interval or leave --interval out"
        )
    return interval


def candles_from_store(
    store: CandleStore,
    symbol: str,
    interval: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    exchange: str | None = None,
    *,
    allow_partial: bool = False,
) -> CandleInput:
    """Candles of one series from the store, covering ``[start, end)`` (see
    :func:`~cryptota_core.backtest.coverage.check_coverage`; ``allow_partial`` takes what is
    stored). Without ``exchange``, Binance data is preferred and synthetic data is used only when
    there is no Binance data in the window (and said so)."""
    for candidate in [exchange] if exchange else list(EXCHANGES):
        key = SeriesKey(exchange=candidate, symbol=symbol, interval=interval)
        read = store.read_with_fingerprint(key, start, end)
        if not read.frame.empty:
            if candidate == "synthetic":
                log.info("reading SYNTHETIC candles for %s (no Binance data)", symbol)
            check_coverage(key, read.frame, start, end, allow_partial=allow_partial)
            return CandleInput(read.frame, key, interval, read.fingerprint, f"store:{key}")
    raise NoDataError(
        f"no candles for {symbol} {interval} in [{start.isoformat()}, {end.isoformat()}); run "
        f"`cryptota ingest --symbols {symbol} --start {start.date()} --end {end.date()}` first"
    )
