"""Binance kline CSVs, exactly as data.binance.vision ships them.

This is the one place that knows the Binance file format; everything past it sees candle frames.
A kline CSV has twelve columns (below), no header on spot files (futures files have one), and
``open_time``/``close_time`` in epoch milliseconds, except that spot files switched to
microseconds from 2025-01-01. Since a user can concatenate files from either side of that switch,
the unit is detected per row, by magnitude.

Parsing goes through pyarrow's multi-threaded C reader: a month of 1m candles (525,600 rows in a
year-long file, 44,640 in a month) must load in a fraction of a second. Only when that fast path
rejects the file do we walk it line by line in Python, to tell the user *which* line is wrong.
"""

from __future__ import annotations

import _csv
import csv
import io
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from cryptota_core.errors import DataError, InvalidInputError
from cryptota_core.market.frame import (
    CANDLE_COLUMNS,
    candle_frame_from_arrays,
    empty_candle_frame,
    normalise_candles,
)
from cryptota_core.market.intervals import INTERVAL_MS, interval_ms

KLINE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base",
    "taker_buy_quote",
    "ignore",
)
"""The twelve columns of a Binance kline CSV, in file order (Binance's own header calls ``trades``
``count`` and the taker columns ``taker_buy_volume``/``taker_buy_quote_volume``)."""

ACCEPTED_FORM = (
    "expected a Binance kline CSV as data.binance.vision ships it: 12 comma-separated numeric "
    "columns (open_time,open,high,low,close,volume,close_time,quote_volume,trades,"
    "taker_buy_base,taker_buy_quote,ignore), header row optional, times in epoch ms or µs"
)

TimeUnit = Literal["ms", "us", "auto"]
PathOrBuffer = str | os.PathLike[str] | IO[bytes] | IO[str]

_INTEGER_COLUMNS = frozenset({"open_time", "close_time", "trades"})
_COLUMN_TYPES = {c: pa.int64() if c in _INTEGER_COLUMNS else pa.float64() for c in KLINE_COLUMNS}
del _COLUMN_TYPES["ignore"]

# Epoch ms stays below 1e14 until the year 5138; epoch µs passes 1e14 in 1973. Beyond 1e17 µs
# (year 5138 again) a value is more likely nanoseconds or garbage than a real time.
_MS_LIMIT = 10**14
_US_LIMIT = 10**17
_US_FROM_MS = int(pd.Timestamp("2025-01-01", tz="UTC").value // 1_000_000)
"""Spot archive files carry µs open times for candles from this instant (epoch ms) on."""

_ZIP_MAGIC = b"PK\x03\x04"
_PIPE_HEAD_BYTES = 65_536
"""The first block of a pipe, checked for binary content before the rest is read."""

# What pyarrow's converters accept, so the diagnosis blames the same field the fast path refused.
_INTEGER_TEXT = re.compile(r"\s*-?\d+\s*")
_FLOAT_TEXT = re.compile(
    r"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)\s*", re.IGNORECASE
)


def read_kline_csv(
    path_or_buffer: PathOrBuffer, *, name: str | None = None, max_bytes: int | None = None
) -> pd.DataFrame:
    """Read a Binance kline CSV into a canonical candle frame.

    ``path_or_buffer`` is a path or an open binary or text file; a zip holding a single CSV (the
    archive's own download format) is read too, so users can pass what they downloaded. ``name``
    labels the data in error messages when a buffer has no useful ``.name``. Unsorted rows and
    exact duplicates are fixed with a warning (see :func:`normalise_candles`). ``max_bytes``
    bounds what is read (see :func:`read_kline_rows`).

    Raises :class:`InvalidInputError` when a path cannot be opened and :class:`DataError`, with one
    line naming the file, the line and the accepted form, when the content is not a kline CSV.
    """
    label, frame = _read_klines(path_or_buffer, name, max_bytes)
    open_ms = pd.DatetimeIndex(frame.index).as_unit("ns").asi8
    if bool(np.all(np.diff(open_ms) > 0)):
        return frame  # already canonical: skip normalise_candles' second copy of the data
    try:
        return normalise_candles(frame)
    except InvalidInputError as e:
        raise DataError(f"{label}: {e}") from e


def read_kline_rows(
    path_or_buffer: PathOrBuffer, *, name: str | None = None, max_bytes: int | None = None
) -> pd.DataFrame:
    """The candles of a Binance kline CSV exactly as the file holds them: in file order, repeated
    open times kept. Not yet a canonical candle frame: it is for a caller that checks the file
    as it is (:func:`~cryptota_core.market.frame.validate_candles` counts duplicates and names
    the first bad candle by its position, so by its row in the file) before normalising it.

    ``max_bytes`` bounds the read: only regular files and pipes are read (a character device
    such as ``/dev/zero`` or a terminal never ends), a larger file or zip member is refused
    before it is read, and a pipe is read no further than the limit. The same errors as
    :func:`read_kline_csv`, plus :class:`InvalidInputError` for such an input."""
    return _read_klines(path_or_buffer, name, max_bytes)[1]


def _read_klines(
    path_or_buffer: PathOrBuffer, name: str | None, max_bytes: int | None
) -> tuple[str, pd.DataFrame]:
    """The label of the input and its candles in file order (see :func:`read_kline_rows`)."""
    label, data = _read_bytes(path_or_buffer, name, max_bytes)
    if data.startswith(_ZIP_MAGIC):
        label, data = _unzip_single_csv(label, data, max_bytes)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    _refuse_binary(label, data)
    if not data or data.isspace():
        raise DataError(f"{label} is empty; {ACCEPTED_FORM}")

    has_header = _has_header(data)
    if has_header:
        header_fields = next(csv.reader([_first_line(data)]), [])
        if len(header_fields) != len(KLINE_COLUMNS):
            raise DataError(
                f"{label} line 1: found {len(header_fields)} columns in the header "
                f"{_short(_first_line(data))}, not 12; {ACCEPTED_FORM}"
            )
    try:
        table = pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=pa_csv.ReadOptions(
                column_names=list(KLINE_COLUMNS), skip_rows=1 if has_header else 0
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=_COLUMN_TYPES,
                include_columns=[c for c in KLINE_COLUMNS if c != "ignore"],
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DataError(_diagnose(label, data, has_header, str(e))) from e
    if table.num_rows == 0:
        raise DataError(f"{label} holds a header but no candles; {ACCEPTED_FORM}")

    raw_time = table.column("open_time").to_numpy()
    bad_time = np.flatnonzero((raw_time < 0) | (raw_time >= _US_LIMIT))
    if bad_time.size:
        row = int(bad_time[0])
        raise DataError(
            f"{label} line {_line_of_row(data, has_header, row)}: open_time {raw_time[row]} is "
            f"neither epoch milliseconds nor microseconds; {ACCEPTED_FORM}"
        )
    open_ms = np.where(raw_time >= _MS_LIMIT, raw_time // 1000, raw_time)

    columns: dict[str, np.ndarray] = {}
    for column in CANDLE_COLUMNS:
        values = table.column(column).to_numpy()
        if column != "trades":
            not_finite = np.flatnonzero(~np.isfinite(values))
            if not_finite.size:
                row = int(not_finite[0])
                raise DataError(
                    f"{label} line {_line_of_row(data, has_header, row)}: {column} is "
                    f"{values[row]}, not a finite number; {ACCEPTED_FORM}"
                )
        columns[column] = values
    return label, candle_frame_from_arrays(open_ms, columns)


def write_kline_csv(
    frame: pd.DataFrame,
    path_or_buffer: PathOrBuffer,
    *,
    interval: str | None = None,
    header: bool = False,
    time_unit: TimeUnit = "ms",
) -> None:
    """Write a candle frame as a Binance kline CSV that :func:`read_kline_csv` (and any tool that
    reads the archive's files) accepts.

    ``close_time`` is ``open_time + interval - 1 ms``, as Binance writes it; ``interval`` defaults
    to the smallest step between consecutive candles. ``time_unit`` ``"us"`` writes microseconds
    like spot files from 2025 on, ``"auto"`` does so only for candles opening from 2025-01-01, as
    the real archive does. Floats are written in their shortest exact form, so a frame written and
    read back is bit-for-bit the same.
    """
    candles = normalise_candles(frame) if len(frame) else empty_candle_frame()
    open_ms = pd.DatetimeIndex(candles.index).as_unit("ns").asi8 // 1_000_000
    step = interval_ms(interval) if interval is not None else _infer_step_ms(open_ms)
    close_ms = open_ms + step - 1  # Binance's close_time: the candle's last millisecond
    if time_unit == "us":
        scale = np.full(len(open_ms), 1000, dtype="int64")
    elif time_unit == "auto":
        scale = np.where(open_ms >= _US_FROM_MS, 1000, 1).astype("int64")
    elif time_unit == "ms":
        scale = np.ones(len(open_ms), dtype="int64")
    else:
        raise InvalidInputError(f"unknown time_unit {time_unit!r}: use 'ms', 'us' or 'auto'")

    arrays: dict[str, np.ndarray] = {
        "open_time": open_ms * scale,
        # The last instant of the candle in the file's unit: ...59999 in ms, ...59999999 in µs.
        "close_time": (close_ms + 1) * scale - 1,
        "ignore": np.zeros(len(open_ms), dtype="int64"),
    }
    for column in CANDLE_COLUMNS:
        arrays[column] = candles[column].to_numpy()
    table = pa.table({c: arrays[c] for c in KLINE_COLUMNS})
    sink = io.BytesIO()
    if header:
        sink.write((",".join(KLINE_COLUMNS) + "\n").encode())
    pa_csv.write_csv(table, sink, write_options=pa_csv.WriteOptions(include_header=False))
    _write_bytes(path_or_buffer, sink.getvalue())


def _infer_step_ms(open_ms: np.ndarray) -> int:
    """The interval a frame was sampled at: its smallest step, which gaps cannot hide unless
    every candle is isolated."""
    if len(open_ms) < 2:
        if len(open_ms) == 0:
            return INTERVAL_MS["1m"]
        raise InvalidInputError(
            "cannot infer the interval of a single candle: pass interval= to write_kline_csv"
        )
    step = int(np.diff(open_ms).min())
    if step not in INTERVAL_MS.values():
        raise InvalidInputError(
            f"candles are {step} ms apart, not a supported interval: pass interval= to "
            "write_kline_csv"
        )
    return step


def _read_bytes(
    path_or_buffer: PathOrBuffer, name: str | None, max_bytes: int | None
) -> tuple[str, bytes]:
    """Slurp the input: a month of 1m candles is a few MB, and pyarrow parses a buffer fastest.
    With ``max_bytes``, never more than that (plus one byte, to tell "at the limit" from
    "beyond it")."""
    if isinstance(path_or_buffer, str | os.PathLike):
        path = Path(path_or_buffer)
        label = name or str(path)
        try:
            is_pipe = _check_readable(path, label, max_bytes)
            with path.open("rb") as file:
                if is_pipe:
                    data = _read_pipe(file, label, max_bytes)
                else:
                    data = file.read() if max_bytes is None else file.read(max_bytes + 1)
        except FileNotFoundError as e:
            raise InvalidInputError(
                f"CSV file {label} does not exist: pass the path of a Binance kline CSV"
            ) from e
        except IsADirectoryError as e:
            raise InvalidInputError(
                f"{label} is a directory: pass the path of a Binance kline CSV file"
            ) from e
        except OSError as e:
            raise InvalidInputError(f"cannot read CSV file {label}: {e.strerror}") from e
        _check_size(label, len(data), max_bytes)
        return label, data
    label = name or str(getattr(path_or_buffer, "name", "<buffer>"))
    # At most max_bytes + 1 (characters, for a text buffer): enough to tell it is too large.
    content = path_or_buffer.read() if max_bytes is None else path_or_buffer.read(max_bytes + 1)
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    _check_size(label, len(data), max_bytes)
    return label, data


def _read_pipe(file: IO[bytes], label: str, max_bytes: int | None) -> bytes:
    """A pipe's content, at most ``max_bytes + 1`` bytes of it; binary input (``<(cat
    /dev/zero)``) is refused after its first block instead of once the limit is read."""
    head = file.read(_PIPE_HEAD_BYTES)
    if not head.startswith(_ZIP_MAGIC):
        _refuse_binary(label, head)
    if max_bytes is not None and len(head) > max_bytes:
        return head
    rest = file.read() if max_bytes is None else file.read(max_bytes + 1 - len(head))
    return head + rest


def _check_readable(path: Path, label: str, max_bytes: int | None) -> bool:
    """Refuse, before reading a byte, what would never end (a character or block device: ``cat
    /dev/zero`` runs until the process is killed; a terminal waits for typing) or is known to
    exceed ``max_bytes``. Regular files and pipes (``--csv <(unzip -p ...)``) are read; a pipe's
    size is unknown in advance, so its read is bounded instead (:func:`_read_bytes`). True for a
    pipe."""
    info = path.stat()  # raises FileNotFoundError; never blocks, even on a pipe
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(path)
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        kind = (
            "a character device"
            if stat.S_ISCHR(mode)
            else "a block device"
            if stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a special file"
        )
        raise InvalidInputError(
            f"{label} is {kind}, not a regular file: pass the path of a Binance kline CSV file"
        )
    if stat.S_ISFIFO(mode):
        return True
    _check_size(label, info.st_size, max_bytes)
    return False


def _check_size(label: str, size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise InvalidInputError(
            f"{label} holds more than {max_bytes:,} bytes, the limit on a CSV "
            "(CRYPTOTA_CSV_MAX_BYTES; a year of 1m candles is about 60 MB): split the file or "
            "raise the limit"
        )


def _refuse_binary(label: str, data: bytes) -> None:
    if b"\x00" in data[:4096]:
        raise DataError(f"{label} is binary, not a CSV; {ACCEPTED_FORM}")


def _write_bytes(path_or_buffer: PathOrBuffer, data: bytes) -> None:
    if isinstance(path_or_buffer, str | os.PathLike):
        Path(path_or_buffer).write_bytes(data)
    elif isinstance(path_or_buffer, io.TextIOBase):
        path_or_buffer.write(data.decode("utf-8"))
    else:
        path_or_buffer.write(data)  # type: ignore[arg-type]


def _unzip_single_csv(label: str, data: bytes, max_bytes: int | None) -> tuple[str, bytes]:
    """The one CSV in a zip; with ``max_bytes``, a member that unpacks to more is refused (by its
    declared size before unpacking, and by what it really unpacks to, in case that lies)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise DataError(
                    f"{label} is a zip of {len(members)} files, expected exactly one CSV; "
                    f"{ACCEPTED_FORM}"
                )
            member_label = f"{label}:{members[0].filename}"
            _check_size(member_label, members[0].file_size, max_bytes)
            with archive.open(members[0]) as member:
                content = member.read() if max_bytes is None else member.read(max_bytes + 1)
            _check_size(member_label, len(content), max_bytes)
            return member_label, content
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as e:
        raise DataError(f"{label} is a damaged zip ({e}); {ACCEPTED_FORM}") from e


def _first_line(data: bytes) -> str:
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    return line.decode("utf-8", errors="replace").strip()


def _has_header(data: bytes) -> bool:
    """A header is a first line whose first field is not an integer (Binance writes
    ``open_time``; users write anything)."""
    first = _first_line(data).split(",", 1)[0].strip().strip('"').strip()
    return not first.lstrip("-").isdigit()


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _data_rows(data: bytes, has_header: bool) -> _csv.Reader:
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))
    if has_header:
        next(reader, None)
    return reader


def _line_of_row(data: bytes, has_header: bool, row: int) -> int:
    """Line number of the ``row``-th (0-based) data row, skipping blank lines as pyarrow does.
    Only called on the error path, so a Python walk is fine."""
    reader = _data_rows(data, has_header)
    seen = -1
    for fields in reader:
        if fields:
            seen += 1
            if seen == row:
                return reader.line_num
    return row + 1 + int(has_header)


def _diagnose(label: str, data: bytes, has_header: bool, arrow_message: str) -> str:
    """Find the first offending line the fast parser refused and say what is wrong with it."""
    reader = _data_rows(data, has_header)
    for fields in reader:
        if not fields:
            continue
        line = reader.line_num
        if len(fields) != len(KLINE_COLUMNS):
            return (
                f"{label} line {line}: found {len(fields)} columns, not 12 "
                f"({_short(','.join(fields))}); {ACCEPTED_FORM}"
            )
        for column, value in zip(KLINE_COLUMNS, fields, strict=True):
            if column == "ignore":
                continue
            integer = column in _INTEGER_COLUMNS
            if not (_INTEGER_TEXT if integer else _FLOAT_TEXT).fullmatch(value):
                kind = "an integer" if integer else "a number"
                return (
                    f"{label} line {line}: {column} {_short(value)} is not {kind}; {ACCEPTED_FORM}"
                )
    detail = arrow_message.splitlines()[0] if arrow_message else "unreadable"
    return f"{label}: cannot parse ({_short(detail)}); {ACCEPTED_FORM}"
