"""PostgreSQL binary COPY for fixed-width columns, encoded and decoded with numpy.

Candles are fixed-width rows (int64 times, float64 prices, int64 counts, and text keys that are
constant within one call), so the binary COPY stream is a numpy structured array: no per-row
Python and no float parsing on either side. This is what lets the store take a year of 1m candles
in about a second. Format: https://www.postgresql.org/docs/current/sql-copy.html (Binary Format).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
"""11-byte signature, 32-bit flags (no OIDs), 32-bit header-extension length (0)."""
TRAILER = b"\xff\xff"

PG_EPOCH_US = 946_684_800_000_000
"""2000-01-01T00:00:00Z in Unix microseconds: PostgreSQL's timestamp origin."""

Column = tuple[str, np.ndarray | bytes]
"""(name, values): an int64/float64 array of one value per row, or bytes constant for all rows."""


def encode(columns: Sequence[Column], rows: int) -> bytes:
    """Encode ``rows`` rows of ``columns`` as a binary COPY stream. int64 arrays become ``bigint``
    (or ``timestamptz`` when the caller passed microseconds since 2000), float64 arrays
    ``double precision``, bytes a constant ``text`` value."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for i, (_, values) in enumerate(columns):
        fields.append((f"len{i}", ">i4"))
        if isinstance(values, bytes):
            fields.append((f"val{i}", f"S{len(values)}"))
        elif values.dtype.kind == "f":
            fields.append((f"val{i}", ">f8"))
        else:
            fields.append((f"val{i}", ">i8"))
    out = np.empty(rows, dtype=np.dtype(fields))
    out["count"] = len(columns)
    for i, (_, values) in enumerate(columns):
        out[f"len{i}"] = len(values) if isinstance(values, bytes) else 8
        out[f"val{i}"] = values
    return SIGNATURE + out.tobytes() + TRAILER


def decode(data: bytes, kinds: Sequence[str]) -> dict[int, np.ndarray]:
    """Decode a binary COPY stream of non-null 8-byte columns (``kinds``: ``"i"`` for bigint or
    timestamptz, ``"f"`` for double precision) into native-endian arrays by column position."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for i, kind in enumerate(kinds):
        fields += [(f"len{i}", ">i4"), (f"val{i}", ">f8" if kind == "f" else ">i8")]
    dtype = np.dtype(fields)
    body = len(data) - len(SIGNATURE) - len(TRAILER)
    if not data.startswith(SIGNATURE[:11]) or body < 0 or body % dtype.itemsize:
        raise ValueError("unexpected binary COPY stream (NULL values or a different column set)")
    rows = np.frombuffer(data, dtype=dtype, count=body // dtype.itemsize, offset=len(SIGNATURE))
    for i in range(len(kinds)):
        if len(rows) and not np.all(rows[f"len{i}"] == 8):
            raise ValueError(f"column {i} holds NULL or non-8-byte values")
    return {
        i: rows[f"val{i}"].astype("<f8" if kind == "f" else "<i8") for i, kind in enumerate(kinds)
    }


def ms_to_pg_timestamp(ms: np.ndarray) -> np.ndarray:
    """Unix epoch milliseconds → PostgreSQL ``timestamptz`` binary value (µs since 2000)."""
    return np.asarray(ms, dtype="int64") * 1000 - PG_EPOCH_US


def pg_timestamp_to_ms(values: np.ndarray) -> np.ndarray:
    """PostgreSQL ``timestamptz`` binary value → Unix epoch milliseconds (sub-ms truncated)."""
    return (np.asarray(values, dtype="int64") + PG_EPOCH_US) // 1000
