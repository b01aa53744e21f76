"""Numbers as a quant reads them: the one place that decides how a metric is shown.

The domain keeps every ratio a fraction (``total_return`` 0.0123) and every count a float where
it shares a frame with other metrics; stored results and ``--json`` keep those exact values.
Where a person reads them — the CLI's tables, the demo's summary, Dagster metadata — returns,
drawdowns and rates are percentages, counts are integers and everything else has four
significant digits, so ``trade_count 7`` never prints as ``7.0000`` nor a Sharpe ratio as
``1.234567890123``.
"""

from __future__ import annotations

import math
from typing import SupportsFloat

import numpy as np
import pandas as pd

from cryptota_core.numbers import finite_or_none

PERCENT_METRICS = frozenset(
    {
        "total_return",
        "annual_return",
        "buy_and_hold_return",
        "best_period_return",
        "worst_period_return",
        "annual_volatility",
        "downside_risk",
        "max_drawdown",
        "avg_drawdown",
        "var_5",
        "cvar_5",
        "ulcer_index",
        "alpha",
        "win_rate",
        "kelly_criterion",
        "oos_total_return",
        "oos_max_drawdown",
        "out_sample_return",
        "profitable_windows",
        "modal_slug_share",
    }
)
"""Fractions people read as percentages (besides every ``*_pct``, which DESIGN §6 defines as a
fraction too)."""

COUNT_METRICS = frozenset(
    {
        "trade_count",
        "open_trades",
        "max_drawdown_duration_bars",
        "max_trade_duration_bars",
        "max_consecutive_wins",
        "max_consecutive_losses",
        "bars",
        "trades",
        "sets",
        "trials",
        "n_trials",
        "windows",
        "window_no",
        "runs",
        "cached_runs",
    }
)
"""Whole numbers (a mean number of bars, ``avg_trade_duration_bars``, is not one)."""

SIGNIFICANT_DIGITS = 4


def is_percent(name: str) -> bool:
    """Whether metric ``name`` is a fraction shown as a percentage (``strategy/`` prefixes, as
    in the research metadata, are ignored)."""
    base = name.rsplit("/", 1)[-1]
    return base in PERCENT_METRICS or base.endswith("_pct")


def is_count(name: str) -> bool:
    """Whether metric ``name`` is a whole number."""
    base = name.rsplit("/", 1)[-1]
    return base in COUNT_METRICS or base.endswith("_count")


def significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (for metadata that stays a number,
    so the UI can still plot it across materialisations)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def format_number(value: SupportsFloat | None, digits: int = SIGNIFICANT_DIGITS) -> str:
    """``value`` with ``digits`` significant digits and thousands separators, never in
    exponent form for everyday magnitudes (10,234.56 → ``10,235``; 0.012345 → ``0.01235``);
    ``-`` when undefined."""
    number = finite_or_none(value)
    if number is None:
        return "-"
    if number == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(number)))
    if magnitude < -6 or magnitude > 15:
        return f"{number:.{digits - 1}e}"
    decimals = max(0, digits - 1 - magnitude)
    return f"{number:,.{decimals}f}"


def format_metric(name: str, value: SupportsFloat | None) -> str:
    """Metric ``name``'s ``value`` as a person reads it: ``12.34 %``, ``7`` or ``1.235``."""
    number = finite_or_none(value)
    if number is None:
        return "-"
    if is_count(name):
        return f"{round(number):,}"
    if is_percent(name):
        return f"{format_number(number * 100)} %"
    return format_number(number)


def metadata_number(name: str, value: SupportsFloat | None) -> int | float | None:
    """Metric ``name``'s ``value`` for Dagster metadata: an int for a count, otherwise four
    significant digits, in percent for a percentage (the key then says ``_pct``, see
    :func:`metadata_key`); None when undefined."""
    number = finite_or_none(value)
    if number is None:
        return None
    if is_count(name):
        return round(number)
    return significant(number * 100 if is_percent(name) else number)


def metadata_key(name: str) -> str:
    """The metadata key of metric ``name``: percentages say so (``total_return`` →
    ``total_return_%``), so a number in the UI never reads as a fraction."""
    return f"{name} %" if is_percent(name) else name


def readable_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A table of metrics as people read it (the UI's tables): percentage columns in percent
    and named so (``total_return %``), counts as nullable integers, other floats to four
    significant digits. Only for tables of figures: prices keep every digit elsewhere."""
    out = pd.DataFrame(index=frame.index)
    for name, column in frame.items():
        label = str(name)
        column = _numbers_if_numeric(column)
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            out[label] = column
        elif is_count(label):
            out[label] = column.round().astype("Int64")
        elif is_percent(label):
            out[f"{label} %"] = column.astype("float64").mul(100).map(_significant_or_nan)
        elif pd.api.types.is_float_dtype(column):
            out[label] = column.map(_significant_or_nan)
        else:
            out[label] = column
    return out


def _numbers_if_numeric(column: pd.Series) -> pd.Series:
    """An object column of numbers and ``None`` as floats: concatenating a frame whose column
    is all ``None`` (a strategy with no defined score) with one of floats leaves object dtype,
    and the figures would print every digit."""
    if column.dtype != object:
        return column
    values = column.dropna()
    numeric = all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)
        for v in values
    )
    return column.astype("float64") if numeric and len(values) else column


COMPACT_LABELS: dict[str, str] = {
    "sharpe_ratio": "Sharpe",
    "total_return": "return",
    "max_drawdown": "max DD",
    "trade_count": "trades",
    "win_rate": "win rate",
    "in_sample_score": "IS score",
    "out_sample_score": "OOS score",
    "out_sample_return": "OOS return",
}
"""Column headers of UI tables, where the page is narrow: the header is what makes a column
wide (numbers are short), and a table wider than its panel squeezes the slugs into four lines.
The JSON beside each table keeps the metric names."""


def compact_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (already :func:`readable_frame`) with :data:`COMPACT_LABELS` as headers, a
    percent column keeping its `` %``."""

    def label(name: str) -> str:
        base, percent = (name[:-2], " %") if name.endswith(" %") else (name, "")
        return COMPACT_LABELS.get(base, base) + percent

    return frame.rename(columns=lambda name: label(str(name)))


def _significant_or_nan(value: float) -> float:
    return significant(value) if pd.notna(value) else math.nan
