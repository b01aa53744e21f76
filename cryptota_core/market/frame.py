"""The candle frame: the one in-memory shape every part of CryptoTA exchanges candles in.

A candle frame is a pandas DataFrame indexed by ``open_time`` (tz-aware UTC, nanosecond unit,
strictly increasing, no duplicates) with the float and integer columns below, in that order.
A frame always holds one series: one exchange, symbol and interval, which travel beside it
(see :class:`SeriesKey`), never inside it, so that a frame from the synthetic generator can never
be mistaken for Binance data.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator

from cryptota_core.errors import InvalidInputError
from cryptota_core.market.intervals import (
    INTERVAL_MS,
    expected_open_times,
    interval_ms,
    parse_interval,
)

log = logging.getLogger(__name__)

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
FLOAT_COLUMNS: tuple[str, ...] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "taker_buy_base",
    "taker_buy_quote",
)
CANDLE_COLUMNS: tuple[str, ...] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trades",
    "taker_buy_base",
    "taker_buy_quote",
)
"""Columns of a candle frame, in order. ``trades`` is int64, every other column float64."""

EXCHANGES: tuple[str, ...] = ("binance", "synthetic")


class SeriesKey(BaseModel):
    """Which series a candle frame belongs to: (exchange, symbol, interval)."""

    model_config = ConfigDict(frozen=True)

    exchange: str
    symbol: str
    interval: str

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        if value not in EXCHANGES:
            raise ValueError(f"exchange must be one of {', '.join(EXCHANGES)}")
        return value

    @field_validator("symbol")
    @classmethod
    def _symbol_shape(cls, value: str) -> str:
        return normalise_symbol(value)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        return parse_interval(value)

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol}:{self.interval}"


def normalise_symbol(value: str) -> str:
    """Upper-case a symbol and check its shape (Binance spot symbols are 2-20 letters/digits)."""
    symbol = value.strip().upper()
    if not (2 <= len(symbol) <= 20 and symbol.isalnum() and symbol.isascii()):
        raise InvalidInputError(
            f"invalid symbol {value!r}: use a Binance spot symbol such as BTCUSDT "
            "(letters and digits only)"
        )
    return symbol


def parse_symbols(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """Parse ``BTCUSDT,ETHUSDT`` (or a list) into unique, normalised symbols, order kept."""
    items = value.split(",") if isinstance(value, str) else list(value)
    symbols = [normalise_symbol(s) for s in items if s.strip()]
    if not symbols:
        raise InvalidInputError("no symbols given: pass e.g. --symbols BTCUSDT,ETHUSDT")
    return list(dict.fromkeys(symbols))


def empty_candle_frame() -> pd.DataFrame:
    """A candle frame with no rows and the right dtypes."""
    index = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name="open_time")
    data = {c: pd.Series([], dtype="int64" if c == "trades" else "float64") for c in CANDLE_COLUMNS}
    return pd.DataFrame(data, index=index)


def candle_frame_from_arrays(
    open_time_ms: np.ndarray, columns: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Build a candle frame from epoch-millisecond open times and column arrays (no copies where
    the dtypes already match). The caller guarantees order and uniqueness; use
    :func:`normalise_candles` when it cannot."""
    index = pd.DatetimeIndex(
        pd.to_datetime(np.asarray(open_time_ms, dtype="int64"), unit="ms", utc=True),
        name="open_time",
    ).as_unit("ns")
    data = {
        c: np.asarray(columns[c], dtype="int64" if c == "trades" else "float64")
        for c in CANDLE_COLUMNS
    }
    return pd.DataFrame(data, index=index)


def normalise_candles(frame: pd.DataFrame) -> pd.DataFrame:
    """Bring any frame with an ``open_time`` index or column and the candle columns into the
    canonical shape. What is safe to fix is fixed with a warning: unsorted rows are sorted and
    exact duplicates dropped. Conflicting duplicates (same time, different values) raise."""
    df = frame
    if "open_time" in df.columns:
        df = df.set_index("open_time")
    missing = [c for c in CANDLE_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidInputError(
            f"candle frame lacks columns {missing}; needs {list(CANDLE_COLUMNS)}"
        )
    if pd.api.types.is_integer_dtype(df.index.dtype):
        # Integer times are Binance's epoch milliseconds, never nanoseconds.
        index = pd.DatetimeIndex(pd.to_datetime(df.index, unit="ms", utc=True))
    elif pd.api.types.is_datetime64_any_dtype(df.index.dtype):
        index = pd.DatetimeIndex(df.index)
    else:
        raise InvalidInputError(
            f"candle open_time must be datetimes or epoch milliseconds, not {df.index.dtype}"
        )
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    out = pd.DataFrame(
        {c: df[c].to_numpy(dtype="int64" if c == "trades" else "float64") for c in CANDLE_COLUMNS},
        index=index.as_unit("ns").rename("open_time"),
    )
    if not out.index.is_monotonic_increasing:
        log.warning("candles were not in time order; sorted them")
        out = out.sort_index(kind="stable")
    if out.index.has_duplicates:
        dup_mask = out.index.duplicated(keep=False)
        dups = out[dup_mask]
        distinct = dups.reset_index().drop_duplicates()
        if distinct["open_time"].duplicated().any():
            first = distinct.loc[distinct["open_time"].duplicated(), "open_time"].iloc[0]
            raise InvalidInputError(
                f"two different candles share open_time {first.isoformat()}; fix the input file"
            )
        log.warning("dropped %d exact duplicate candles", int(out.index.duplicated().sum()))
        out = out[~out.index.duplicated(keep="first")]
    return out


@dataclass
class CandleReport:
    """What :func:`validate_candles` found. ``ok`` is True when nothing is wrong; gaps are listed
    but do not make a frame invalid, because real exchange outages leave real gaps."""

    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    step_ms: int = 60_000
    expected_rows: int | None = None
    duplicates: int = 0
    non_monotonic: int = 0
    ohlc_violations: int = 0
    negative_volume: int = 0
    future_candles: int = 0
    misaligned: int = 0
    gaps: list[tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=list)
    first_rows: dict[str, int] = field(default_factory=dict)
    """Position (0-based, in the checked frame's own order) of the first candle with each kind of
    defect, keyed by the name of its count (``"ohlc_violations"``, ...): what lets an error name
    the offending candle instead of only counting them (see :func:`first_defect`)."""
    now: pd.Timestamp | None = None
    """The instant the "not yet closed" check was made against."""

    @property
    def missing_candles(self) -> int:
        """Candles absent inside the gaps (each gap is ``[first missing, last missing]``)."""
        return sum(
            (end - start) // pd.Timedelta(milliseconds=self.step_ms) + 1 for start, end in self.gaps
        )

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        """One line per kind of defect (not counting gaps)."""
        lines = []
        for name, count in (
            ("duplicate open times", self.duplicates),
            ("out-of-order candles", self.non_monotonic),
            ("candles violating low <= open/close <= high", self.ohlc_violations),
            ("candles with negative volume", self.negative_volume),
            ("candles opening in the future or not yet closed", self.future_candles),
            ("candles off the interval grid", self.misaligned),
        ):
            if count:
                lines.append(f"{count} {name}")
        return lines


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A short, stable hash of a candle frame's times and values: two frames get the same
    fingerprint exactly when they hold the same candles, bit for bit."""
    if frame.empty:
        return "empty"
    hashed = pd.util.hash_pandas_object(frame[list(CANDLE_COLUMNS)], index=True).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def distinct_sorted(ms: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The distinct values of ``ms`` in ascending order: ``ms`` itself when it already is
    strictly increasing, as every stored series and every Binance export is. ``np.unique``'s
    hash table costs a quarter of a second on a year of 1m candles; this check, a millisecond."""
    if len(ms) < 2 or bool((ms[1:] > ms[:-1]).all()):
        return ms
    return np.unique(ms)


def validate_candles(
    frame: pd.DataFrame,
    interval: str,
    *,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    now: pd.Timestamp | None = None,
) -> CandleReport:
    """Check a candle frame (or one with an ``open_time`` column, in any order) for duplicates,
    non-monotonic times, OHLC inconsistency, negative volume, candles not yet closed at ``now``,
    times off the interval grid, and gaps. With ``start``/``end`` the gaps include missing candles
    at either edge of ``[start, end)`` and ``expected_rows`` is set."""
    step_ms = interval_ms(interval)
    times = pd.DatetimeIndex(frame["open_time"] if "open_time" in frame.columns else frame.index)
    if times.tz is None:
        times = times.tz_localize("UTC")
    report = CandleReport(
        rows=len(frame),
        first=times.min() if len(times) else None,
        last=times.max() if len(times) else None,
        step_ms=step_ms,
    )
    if len(times) == 0:
        if start is not None and end is not None:
            expected = expected_open_times(start, end, interval)
            report.expected_rows = len(expected)
            if len(expected):
                report.gaps = [(expected[0], expected[-1])]
        return report

    ms = times.as_unit("ns").asi8 // 1_000_000
    o, h, lo, c = (frame[col].to_numpy(dtype="float64") for col in PRICE_COLUMNS)
    bad = (lo > np.minimum(o, c)) | (np.maximum(o, c) > h) | (lo > h)
    bad |= ~np.isfinite(o) | ~np.isfinite(h) | ~np.isfinite(lo) | ~np.isfinite(c)
    volume = frame["volume"].to_numpy(dtype="float64")
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    report.now = now
    steps = np.diff(ms)
    increasing = bool((steps > 0).all())
    masks = {
        # A candle out of order is the later row of a step back in time.
        "non_monotonic": np.concatenate(([False], steps < 0)),
        "duplicates": np.zeros(len(ms), bool) if increasing else np.asarray(times.duplicated()),
        "misaligned": ms % step_ms != 0,
        "ohlc_violations": bad,
        "negative_volume": ~(volume >= 0),
        "future_candles": ms + step_ms > now.value // 1_000_000,
    }
    for name, mask in masks.items():
        count = int(np.count_nonzero(mask))
        setattr(report, name, count)
        if count:
            report.first_rows[name] = int(np.argmax(mask))

    points = ms if increasing else np.unique(ms)
    lo_edge = hi_edge = None
    if start is not None and end is not None:
        expected = expected_open_times(start, end, interval)
        report.expected_rows = len(expected)
        if len(expected):
            lo_edge = int(expected[0].value // 1_000_000)
            hi_edge = int(expected[-1].value // 1_000_000)
    if lo_edge is not None and hi_edge is not None:
        points = points[(points >= lo_edge) & (points <= hi_edge)]
        points = np.concatenate(([lo_edge - step_ms], points, [hi_edge + step_ms]))
        points = distinct_sorted(points)  # sorted already: the edges lie outside
    jumps = np.nonzero(np.diff(points) > step_ms)[0]
    report.gaps = [
        (
            pd.Timestamp(int(points[i] + step_ms), unit="ms", tz="UTC"),
            pd.Timestamp(int(points[i + 1] - step_ms), unit="ms", tz="UTC"),
        )
        for i in jumps
    ]
    return report


_DEFECT_ORDER: tuple[str, ...] = (
    "duplicates",
    "misaligned",
    "ohlc_violations",
    "negative_volume",
    "future_candles",
    "non_monotonic",
)
"""The kinds of defect :func:`validate_candles` finds, in the order a tie (one candle with two
defects) is reported."""


def format_time(ts: pd.Timestamp) -> str:
    """``ts`` as ISO-8601 UTC, to the minute unless it has seconds (an off-grid time must show
    what makes it off-grid): what error messages name candles by."""
    ts = ts.tz_convert("UTC") if ts.tzinfo is not None else ts.tz_localize("UTC")
    if ts.second == 0 and ts.microsecond == 0 and ts.nanosecond == 0:
        return ts.strftime("%Y-%m-%dT%H:%MZ")
    return ts.isoformat().replace("+00:00", "Z")


def first_defect(
    frame: pd.DataFrame, report: CandleReport, *, ignore: Collection[str] = ()
) -> str | None:
    """One line naming the first candle (in ``frame``'s order, so in file order for a frame
    straight from a file) that ``report`` found defective and saying what is wrong with it, with
    how many candles share the defect; None when nothing but ``ignore``'d kinds (names as in
    :attr:`CandleReport.first_rows`) is wrong. Gaps are never defects (they are outages)."""
    found = [
        (row, _DEFECT_ORDER.index(name), name)
        for name, row in report.first_rows.items()
        if name not in ignore
    ]
    if not found:
        return None
    row, _, name = min(found)
    times = pd.DatetimeIndex(frame["open_time"] if "open_time" in frame.columns else frame.index)
    times = times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
    opened = times[row]
    candle = frame.iloc[row]
    step = pd.Timedelta(milliseconds=report.step_ms)
    interval = next((k for k, v in INTERVAL_MS.items() if v == report.step_ms), f"{step}")
    count: int = getattr(report, name)
    others = f"the first of {count:,} such candles" if count > 1 else "the only such candle"
    what = f"the candle opening {format_time(opened)}"
    if name == "duplicates":
        detail = f"{what} appears more than once; remove the repeated rows"
        others = f"{count:,} repeated rows" if count > 1 else "the only repeated row"
    elif name == "misaligned":
        detail = (
            f"{what} is off the {interval} grid (open times are whole multiples of {interval} "
            "from 00:00 UTC)"
        )
    elif name == "ohlc_violations":
        prices = ", ".join(f"{c} {float(candle[c])!r}" for c in PRICE_COLUMNS)
        detail = f"{what} breaks low <= min(open, close) <= max(open, close) <= high ({prices})"
    elif name == "negative_volume":
        detail = f"{what} has volume {float(candle['volume'])!r}; volume must be a number >= 0"
    elif name == "future_candles":
        now = f", it is now {format_time(report.now.floor('s'))}" if report.now is not None else ""
        detail = (
            f"{what} has not closed yet (it closes at {format_time(opened + step)}{now}), so "
            "its prices are not final"
        )
    else:
        detail = f"{what} comes after a later candle"
    return f"{detail} ({others})"
