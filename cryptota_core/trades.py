"""The trade record shared by the engines, the metrics and the results store."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

TRADE_COLUMNS: tuple[str, ...] = (
    "entry_time",  # datetime64[ns, UTC]: time of the entry fill (open of the bar after the signal)
    "exit_time",  # datetime64[ns, UTC]; NaT for a trade still open at the end
    "side",  # "long" or "short"
    "size",  # float, base-asset units, always positive
    "entry_price",  # float, fill price including slippage
    "exit_price",  # float; for an open trade the last close it is marked at
    "pnl",  # float, quote currency, net of commission on both fills
    "pnl_pct",  # float, pnl / (size * entry_price), a fraction (0.01 = 1 %)
    "commission",  # float, quote currency, both fills
    "bars",  # int, bars held (exit bar index - entry bar index)
    "is_open",  # bool, still open at the end of the data (marked to market)
)
"""Columns of a trades frame, in order. Trade statistics count only rows with ``is_open`` False."""


def empty_trades() -> pd.DataFrame:
    """A trades frame with no rows and the right dtypes."""
    return pd.DataFrame(
        {
            "entry_time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "exit_time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "side": pd.Series([], dtype="object"),
            "size": pd.Series([], dtype="float64"),
            "entry_price": pd.Series([], dtype="float64"),
            "exit_price": pd.Series([], dtype="float64"),
            "pnl": pd.Series([], dtype="float64"),
            "pnl_pct": pd.Series([], dtype="float64"),
            "commission": pd.Series([], dtype="float64"),
            "bars": pd.Series([], dtype="int64"),
            "is_open": pd.Series([], dtype="bool"),
        }
    )


def trades_frame(rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> pd.DataFrame:
    """A trades frame with the right dtypes from rows read back from storage or JSON: tuples in
    :data:`TRADE_COLUMNS` order or mappings keyed by column; times as datetimes or ISO-8601
    strings, a missing exit time or price as None."""
    records = [
        tuple(row[c] for c in TRADE_COLUMNS) if isinstance(row, Mapping) else tuple(row)
        for row in rows
    ]
    if not records:
        return empty_trades()
    frame = pd.DataFrame(records, columns=list(TRADE_COLUMNS))
    for column in ("entry_time", "exit_time"):
        frame[column] = pd.to_datetime(frame[column], utc=True).dt.as_unit("ns")
    floats = ["size", "entry_price", "exit_price", "pnl", "pnl_pct", "commission"]
    frame[floats] = frame[floats].astype("float64")
    return frame.astype({"side": "object", "bars": "int64", "is_open": "bool"})
