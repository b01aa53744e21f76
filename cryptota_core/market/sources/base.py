"""The interface every candle source implements.

One implementation per external system (exchange REST API, archive server, the synthetic
generator); quirks of that system stay inside its module.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd


@runtime_checkable
class CandleSource(Protocol):
    """Produces candle frames (see :mod:`cryptota_core.market.frame`) for one series at a time."""

    exchange: str
    """``binance`` for real exchange data (REST or archive), ``synthetic`` for simulated data."""

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        now: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Return the closed candles of ``symbol``/``interval`` opening in ``[start, end)`` as a
        canonical candle frame. Missing candles (exchange outages, days absent from the archive)
        are simply absent: a source never invents candles. Raises
        :class:`~cryptota_core.errors.InvalidInputError` for a bad symbol or interval and
        :class:`~cryptota_core.errors.DataError` for malformed data.

        ``now`` (default: the current time) is the clock a source refuses future candles against:
        nothing that has not closed by ``now`` is returned, and tests freeze it to get the same
        candles on every run. A source with its own authoritative clock (Binance REST asks the
        server's time) ignores it."""
        ...
