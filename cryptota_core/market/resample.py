"""Resampling candles to a longer interval (15m, 1h, 4h, 1d from 1m).

The same rule TimescaleDB's continuous aggregates follow (see ``storage/timescale.py``): open of
the first candle, max high, min low, close of the last candle, sums of volumes and trades. A bucket
exists when at least one candle of it exists, so an exchange outage inside an hour does not delete
the hour; an incomplete bucket at the very end (still forming) is dropped.
"""

from __future__ import annotations

import pandas as pd

from cryptota_core.market.frame import CANDLE_COLUMNS, empty_candle_frame
from cryptota_core.market.intervals import interval_ms

_AGG = {
    "open": "first",
    "high": "max",
    "low": "min",
    "close": "last",
    "volume": "sum",
    "quote_volume": "sum",
    "trades": "sum",
    "taker_buy_base": "sum",
    "taker_buy_quote": "sum",
}


def resample_candles(
    frame: pd.DataFrame,
    source_interval: str,
    target_interval: str,
    *,
    drop_incomplete_last: bool = True,
) -> pd.DataFrame:
    """Aggregate a candle frame of ``source_interval`` into ``target_interval`` candles, on the
    epoch-aligned UTC grid Binance uses."""
    src, dst = interval_ms(source_interval), interval_ms(target_interval)
    if dst == src:
        return frame
    if dst < src or dst % src:
        raise ValueError(f"cannot resample {source_interval} candles to {target_interval}")
    if frame.empty:
        return empty_candle_frame()
    rule = pd.Timedelta(milliseconds=dst)
    grouped = frame.resample(rule, origin="epoch", label="left", closed="left")
    out = grouped.agg(_AGG)
    counts = grouped["open"].count()
    out = out[counts > 0]
    if drop_incomplete_last and len(out) and counts[counts > 0].iloc[-1] < dst // src:
        last_open = out.index[-1]
        last_source = frame.index[-1]
        # Drop the last bucket only when it is still forming (the data stops inside it), not when
        # its missing minutes are an outage followed by later candles.
        if last_source < last_open + rule - pd.Timedelta(milliseconds=src):
            out = out.iloc[:-1]
    out = out[list(CANDLE_COLUMNS)].astype({"trades": "int64"})
    # No ``freq`` on the index: buckets of an outage may be missing, and a frame read from the
    # store (or a TimescaleDB aggregate) carries none either.
    utc = pd.DatetimeIndex(out.index).tz_convert(None).to_numpy()  # naive UTC, unit kept
    out.index = pd.DatetimeIndex(utc, name="open_time").tz_localize("UTC")
    return out
