"""The one spelling of an undefined number at CryptoTA's boundaries.

Inside the domain an undefined value is NaN (it composes in vectorised code). Wherever a number
leaves it — strict JSON (``cryptota backtest --json``), a database column (PostgreSQL's ``json``
rejects NaN; SQLite turns a NaN REAL into NULL anyway), Dagster metadata, a printed table — it is
``None`` instead, and so is ±inf, which no reader can use either.
"""

from __future__ import annotations

import math
from typing import SupportsFloat

import pandas as pd


def finite_or_none(value: SupportsFloat | None) -> float | None:
    """``value`` as a float, or None when it is missing (None, NaN, ``pd.NA``) or infinite."""
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
