"""Candle intervals and the arithmetic on them.

Binance names intervals `1m`, `15m`, `1h`, `1d` and so on. We support the fixed-length ones from
one minute to one day; weeks and months are not fixed-length and no strategy here needs them.
"""

from __future__ import annotations

import difflib
from datetime import UTC, date, datetime, time

import pandas as pd

from cryptota_core.errors import InvalidInputError

INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 3 * 60_000,
    "5m": 5 * 60_000,
    "15m": 15 * 60_000,
    "30m": 30 * 60_000,
    "1h": 3_600_000,
    "2h": 2 * 3_600_000,
    "4h": 4 * 3_600_000,
    "6h": 6 * 3_600_000,
    "8h": 8 * 3_600_000,
    "12h": 12 * 3_600_000,
    "1d": 86_400_000,
}
"""Every supported interval and its length in milliseconds, shortest first."""

SIGNIFICANCE_PERIOD_MS: dict[str, int] = {**INTERVAL_MS, "1w": 7 * INTERVAL_MS["1d"]}
"""The periods an optimisation's significance statistics (PSR, DSR, PBO) can aggregate returns
to: every candle interval, and a week (a fixed length, unlike a month)."""

ROLLUP_INTERVALS: tuple[str, ...] = ("15m", "1h", "4h", "1d")
"""The aggregates the store keeps (continuous aggregates on TimescaleDB) above the 1m base."""

MS_PER_YEAR = 365 * 86_400_000
"""Crypto trades 24/7: a year is 365 days of trading (DESIGN §6)."""


def parse_interval(value: str) -> str:
    """Return ``value`` if it is a supported interval, else raise a one-line error naming the
    accepted values (and the closest one, when the user made a typo)."""
    if value in INTERVAL_MS:
        return value
    close = difflib.get_close_matches(value, list(INTERVAL_MS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InvalidInputError(
        f"unknown interval {value!r}: use one of {', '.join(INTERVAL_MS)}{hint}"
    )


def interval_ms(interval: str) -> int:
    """Length of one candle of ``interval`` in milliseconds."""
    return INTERVAL_MS[parse_interval(interval)]


def interval_timedelta(interval: str) -> pd.Timedelta:
    """Length of one candle of ``interval`` as a pandas Timedelta."""
    return pd.Timedelta(milliseconds=interval_ms(interval))


def periods_per_year(interval: str) -> float:
    """How many candles of ``interval`` make a 365-day year (1m: 525,600; 1h: 8,760; 1d: 365)."""
    return MS_PER_YEAR / interval_ms(interval)


def to_utc_timestamp(value: str | date | datetime | pd.Timestamp) -> pd.Timestamp:
    """Parse a date or time as UTC. Naive values are taken to be UTC; aware ones are converted."""
    try:
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime.combine(value, time(0), tzinfo=UTC)
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise InvalidInputError(
            f"cannot read {value!r} as a date: use ISO-8601 such as 2024-01-01 or "
            "2024-01-01T12:00:00Z"
        ) from e
    if ts is pd.NaT:
        raise InvalidInputError(f"cannot read {value!r} as a date: use ISO-8601 such as 2024-01-01")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def parse_window(
    start: str | date | datetime | pd.Timestamp, end: str | date | datetime | pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Parse a ``[start, end)`` window in UTC: start inclusive, end exclusive (DESIGN §2)."""
    start_ts, end_ts = to_utc_timestamp(start), to_utc_timestamp(end)
    if end_ts <= start_ts:
        raise InvalidInputError(
            f"--end {end_ts.isoformat()} is not after --start {start_ts.isoformat()}: "
            "the window is [start, end), so end must be later than start"
        )
    return start_ts, end_ts


def expected_open_times(start: pd.Timestamp, end: pd.Timestamp, interval: str) -> pd.DatetimeIndex:
    """Every candle open time of ``interval`` in ``[start, end)``, aligned to the interval grid
    (epoch-aligned, as Binance aligns its candles)."""
    step = interval_ms(interval)
    first = -(-int(start.value // 1_000_000) // step) * step
    last_exclusive = int(end.value // 1_000_000)
    if first >= last_exclusive:
        return pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name="open_time")
    times = pd.date_range(
        pd.Timestamp(first, unit="ms", tz="UTC"),
        pd.Timestamp(last_exclusive - 1, unit="ms", tz="UTC"),
        freq=pd.Timedelta(milliseconds=step),
        name="open_time",
    )
    return times.as_unit("ns")


def expected_count(start: pd.Timestamp, end: pd.Timestamp, interval: str) -> int:
    """How many candles of ``interval`` a complete ``[start, end)`` window holds."""
    return len(expected_open_times(start, end, interval))
