"""Where a research result came from, recorded with every optimisation, walk-forward window
and paper order so any number can be traced back to its candles, code and run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lineage:
    """Where a research result came from: the series, the candles' fingerprint, the code and
    the Dagster run (None outside Dagster)."""

    exchange: str
    symbol: str
    candle_fingerprint: str
    code_version: str
    run_id: str | None = None
