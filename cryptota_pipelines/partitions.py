"""How candle work is cut into partitions: one UTC day of one symbol.

``candles_1m`` and ``candle_rollups`` share :data:`CANDLE_PARTITIONS`, a date × symbol grid. The
symbol dimension is dynamic (``symbols``) so the universe can change without a code deploy; the
``symbol_universe_sensor`` keeps it equal to ``CRYPTOTA_SYMBOLS``.

A run may cover one partition (the nightly schedule) or a whole key range (a backfill): Dagster
hands a range run the rectangle of dates × symbols between two keys. :func:`series_windows` turns
whatever set of keys a run got back into ``[start, end)`` windows per symbol, so the assets make
one call into the core per symbol and contiguous stretch of days instead of one per day.

Backtest work is cut per symbol × parameter set (:data:`BACKTEST_PARTITIONS`), both dynamic: the
``param_set_sensor`` keeps ``param_sets`` equal to the slugs of ``CRYPTOTA_STRATEGY_GRIDS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
from dagster import (
    BackfillPolicy,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
)

PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
"""The run tags of a key-range run: what Dagster's own backfill daemon sets on the runs of a
single-run or chunked backfill, and the documented way to launch one (a run with both tags
materialises every key between them). Spelled out here because Dagster exports no public name for
them; tests launch range runs with these tags and check the keys each run covered."""

CANDLE_HISTORY_START = "2017-08-17"
"""First day of Binance spot klines: the earliest ``date`` partition."""

DATE_DIMENSION = "date"
SYMBOL_DIMENSION = "symbol"
PARAM_SET_DIMENSION = "param_set"

SYMBOLS_PARTITIONS = "symbols"
"""Name of the dynamic partitions holding the symbol universe."""

symbol_partitions = DynamicPartitionsDefinition(name=SYMBOLS_PARTITIONS)
"""The symbol universe, kept in the Dagster instance (see ``symbol_universe_sensor``)."""

PARAM_SETS_PARTITIONS = "param_sets"
"""Name of the dynamic partitions holding the registered parameter-set slugs."""

param_set_partitions = DynamicPartitionsDefinition(name=PARAM_SETS_PARTITIONS)
"""Parameter-set slugs (``rsi-p14-os30-ob70``), kept in the instance by ``param_set_sensor``."""


def daily_partitions(start_date: str = CANDLE_HISTORY_START) -> DailyPartitionsDefinition:
    """UTC days from ``start_date`` up to and including yesterday (``end_offset=0``): a day becomes
    a partition only once all of its candles have closed."""
    return DailyPartitionsDefinition(start_date=start_date, timezone="UTC", end_offset=0)


def candle_partitions(start_date: str = CANDLE_HISTORY_START) -> MultiPartitionsDefinition:
    """The date × symbol grid of the candle assets, starting at ``start_date``."""
    return MultiPartitionsDefinition(
        {DATE_DIMENSION: daily_partitions(start_date), SYMBOL_DIMENSION: symbol_partitions}
    )


CANDLE_PARTITIONS = candle_partitions()
"""Partitions of ``candles_1m`` and ``candle_rollups``; keys read ``2024-01-31|BTCUSDT``."""

BACKFILL_PARTITIONS_PER_RUN = 92
"""A backfill run covers at most this many partitions: about a quarter of one symbol's days. Few
runs for years of history, yet a failure near the end of a run repeats a quarter, not years."""

CANDLE_BACKFILL_POLICY = BackfillPolicy.multi_run(
    max_partitions_per_run=BACKFILL_PARTITIONS_PER_RUN
)
"""Shared by every candle asset, so a backfill of candles and rollups lands in the same runs (the
daemon groups partitions per symbol or per day, whichever has fewer keys, then chunks)."""


@dataclass(frozen=True)
class SeriesWindow:
    """``[start, end)`` of whole UTC days of one symbol."""

    symbol: str
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def days(self) -> int:
        return (self.end - self.start) // pd.Timedelta(days=1)

    def __str__(self) -> str:
        last = (self.end - pd.Timedelta(days=1)).date()
        span = f"{self.start.date()}" if self.days == 1 else f"{self.start.date()}..{last}"
        return f"{self.symbol} {span}"


def partition_key(day: date | str, symbol: str) -> MultiPartitionKey:
    """The candle partition of ``symbol`` on the UTC ``day``."""
    day_str = day if isinstance(day, str) else day.isoformat()
    return MultiPartitionKey({DATE_DIMENSION: day_str, SYMBOL_DIMENSION: symbol})


def day_window(key: str) -> SeriesWindow:
    """The one-day window of a candle partition key."""
    dims = CANDLE_PARTITIONS.get_partition_key_from_str(key).keys_by_dimension
    start = pd.Timestamp(dims[DATE_DIMENSION], tz="UTC")
    return SeriesWindow(dims[SYMBOL_DIMENSION], start, start + pd.Timedelta(days=1))


def series_windows(keys: Iterable[str]) -> list[SeriesWindow]:
    """Merge partition keys into the fewest windows: per symbol, one per run of consecutive days.
    Order: symbols as first seen, windows in time order."""
    days_by_symbol: dict[str, set[pd.Timestamp]] = {}
    for key in keys:
        window = day_window(key)
        days_by_symbol.setdefault(window.symbol, set()).add(window.start)
    one_day = pd.Timedelta(days=1)
    windows: list[SeriesWindow] = []
    for symbol, days in days_by_symbol.items():
        ordered = sorted(days)
        start = previous = ordered[0]
        for day in ordered[1:]:
            if day != previous + one_day:
                windows.append(SeriesWindow(symbol, start, previous + one_day))
                start = day
            previous = day
        windows.append(SeriesWindow(symbol, start, previous + one_day))
    return windows


def range_tags(first_day: date, last_day: date, symbols: Sequence[str]) -> dict[str, str]:
    """Run tags that make one run cover ``first_day..last_day`` (inclusive) for ``symbols``.

    A range run gets every key in the rectangle between its two corner keys, so ``symbols`` must
    be adjacent in the instance's ``symbols`` order (a single symbol always is)."""
    return {
        PARTITION_RANGE_START_TAG: partition_key(first_day, symbols[0]),
        PARTITION_RANGE_END_TAG: partition_key(last_day, symbols[-1]),
    }


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of an aware ``moment``."""
    return pd.Timestamp(moment).tz_convert("UTC").date()


BACKTEST_PARTITIONS = MultiPartitionsDefinition(
    {SYMBOL_DIMENSION: symbol_partitions, PARAM_SET_DIMENSION: param_set_partitions}
)
"""Partitions of ``backtest_runs``: keys read ``rsi-p14-os30-ob70|BTCUSDT`` (dimensions in name
order)."""


@dataclass(frozen=True)
class BacktestKey:
    """One backtest partition: a parameter set on a symbol."""

    symbol: str
    param_set: str

    def __str__(self) -> str:
        return backtest_partition_key(self.symbol, self.param_set)


def backtest_partition_key(symbol: str, param_set: str) -> MultiPartitionKey:
    """The backtest partition of ``param_set`` on ``symbol``."""
    return MultiPartitionKey({SYMBOL_DIMENSION: symbol, PARAM_SET_DIMENSION: param_set})


def backtest_keys(keys: Iterable[str]) -> list[BacktestKey]:
    """The backtest partitions behind partition key strings, in the order given."""
    dims = (BACKTEST_PARTITIONS.get_partition_key_from_str(k).keys_by_dimension for k in keys)
    return [BacktestKey(d[SYMBOL_DIMENSION], d[PARAM_SET_DIMENSION]) for d in dims]


def backtest_range_tags(symbols: Sequence[str], param_sets: Sequence[str]) -> dict[str, str]:
    """Run tags that make one run cover every parameter set of ``param_sets`` on every symbol of
    ``symbols``: the rectangle between the two corner keys. Both lists must be adjacent in the
    instance's order of their dynamic partitions (a whole list, or a single entry, always is)."""
    return {
        PARTITION_RANGE_START_TAG: backtest_partition_key(symbols[0], param_sets[0]),
        PARTITION_RANGE_END_TAG: backtest_partition_key(symbols[-1], param_sets[-1]),
    }
