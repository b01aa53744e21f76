"""``candles_1m``: UTC days of 1m candles from the configured source into the candle store.

The decorator carries the orchestration facts; the body is one call of
:func:`cryptota_core.app.ingest.ingest_series` per symbol and stretch of days the run covers. A
nightly run covers one day of one symbol; a backfill run covers a whole key range and still makes
one call per symbol, which ingests month by month in one transaction each (idempotent upserts: a
retry or a re-run leaves exactly one copy of every candle).
"""

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Backoff,
    FreshnessPolicy,
    Jitter,
    MaterializeResult,
    RetryPolicy,
    asset,
)

from cryptota_core.app.ingest import IngestReport, ingest_series
from cryptota_core.market.frame import SeriesKey
from cryptota_core.storage.candle_store import BASE_INTERVAL
from cryptota_core.storage.schema import candles
from cryptota_pipelines.failures import fail_fast_on_bad_input
from cryptota_pipelines.metadata import column_schema, frame_table
from cryptota_pipelines.partitions import (
    CANDLE_BACKFILL_POLICY,
    CANDLE_PARTITIONS,
    SeriesWindow,
    series_windows,
)
from cryptota_pipelines.resources import (
    CandleStoreResource,
    MarketSourceResource,
)

EXCHANGE_POOL = "binance"
"""Concurrency pool of every step that calls the exchange or its archive (see dagster.yaml)."""

SHOWN_GAPS = 50
"""At most this many gaps are listed in a materialisation's ``gap_list`` (``gaps`` counts all)."""

NIGHTLY_INGESTION_CRON = "15 0 * * *"
"""00:15 UTC, once yesterday's last candle has closed (and the exchange has published it)."""

REPAIR_WINDOW_DAYS = 7
"""How many days before yesterday the nightly ingestion requests again when they are missing."""

NIGHTLY_INGESTION = (
    AutomationCondition.cron_tick_passed(NIGHTLY_INGESTION_CRON, "UTC")
    & AutomationCondition.in_latest_time_window(timedelta(days=REPAIR_WINDOW_DAYS + 1))
    & (AutomationCondition.missing() | AutomationCondition.execution_failed())
    & ~AutomationCondition.in_progress()
).with_label(
    f"nightly at 00:15 UTC: yesterday, and the days of the {REPAIR_WINDOW_DAYS} before it that "
    "are missing or whose last run failed"
)
"""The old Celery Beat ingestion task and its repair pass as one condition: at each 00:15 UTC
tick, every ``(day, symbol)`` of the last ``REPAIR_WINDOW_DAYS + 1`` days that was never
materialised (yesterday always, a new symbol's recent days, a day whose run crashed) or whose
latest run failed, and is not being run now. The automation sensor turns a tick's partitions
into one backfill, which the backfill policy cuts into range runs."""

CANDLES_FRESH_BY = FreshnessPolicy.cron(
    deadline_cron="0 2 * * *", lower_bound_delta=timedelta(hours=1, minutes=45), timezone="UTC"
)
"""Yesterday's candles are in by 02:00 UTC: some day was materialised since the 00:15 UTC tick.
Dagster's freshness daemon evaluates it; the UI shows the asset stale (and an alert can fire)
when the nightly ingestion did not run or failed every retry."""


@asset(
    partitions_def=CANDLE_PARTITIONS,
    backfill_policy=CANDLE_BACKFILL_POLICY,
    pool=EXCHANGE_POOL,
    retry_policy=RetryPolicy(
        max_retries=3, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
    ),
    group_name="ingestion",
    automation_condition=NIGHTLY_INGESTION,
    freshness_policy=CANDLES_FRESH_BY,
    metadata={"dagster/column_schema": column_schema(candles)},
    kinds={"python"},  # + where it writes, from the settings (definitions.py)
    code_version="1",
    description="1m candles of one UTC day of one symbol, as the source delivered them; gaps are "
    "recorded, never filled.",
)
def candles_1m(
    context: AssetExecutionContext,
    candle_store: CandleStoreResource,
    market: MarketSourceResource,
) -> MaterializeResult:
    """Ingest every day of every symbol this run covers, one core call per symbol and stretch."""

    def progress(key: SeriesKey, start: pd.Timestamp, end: pd.Timestamp, received: int) -> None:
        context.log.info(f"{key}: {received} candles in [{start.date()}, {end.date()})")

    with fail_fast_on_bad_input():
        store, source = candle_store.store(), market.source()
        reports = [
            ingest_series(store, source, w.symbol, BASE_INTERVAL, w.start, w.end, on_chunk=progress)
            for w in series_windows(context.partition_keys)
        ]
    fingerprints = [store.fingerprint(r.key, r.start, r.end) for r in reports]
    return MaterializeResult(metadata=ingestion_metadata(market, reports, fingerprints))


def ingestion_metadata(
    market: MarketSourceResource, reports: Sequence[IngestReport], fingerprints: Sequence[str]
) -> dict[str, Any]:
    """What a materialisation shows in the UI: counts, time span, gaps, the data fingerprint and
    where the candles came from. A range run records these totals on each of its partitions, so
    ``window`` and ``series`` say what the totals cover."""
    exchange = reports[0].key.exchange
    firsts = [r.first for r in reports if r.first is not None]
    lasts = [r.last for r in reports if r.last is not None]
    gaps = [(r.key.symbol, a, b) for r in reports for a, b in r.gaps]
    metadata: dict[str, Any] = {
        "dagster/row_count": sum(r.received for r in reports),
        "rows": sum(r.received for r in reports),
        "written": sum(r.written for r in reports),
        "expected": sum(r.expected for r in reports),
        "gaps": len(gaps),
        "missing_candles": sum(r.missing for r in reports),
        "first_candle": min(firsts).isoformat() if firsts else "none",
        "last_candle": max(lasts).isoformat() if lasts else "none",
        "fingerprint": fingerprints[0]
        if len(fingerprints) == 1
        else ", ".join(f"{r.key.symbol}:{fp}" for r, fp in zip(reports, fingerprints, strict=True)),
        "window": "; ".join(str(SeriesWindow(r.key.symbol, r.start, r.end)) for r in reports),
        "series": len(reports),
        "exchange": exchange,
        "source": market.source_name,
    }
    if exchange == "synthetic":
        metadata["data_warning"] = (
            f"SYNTHETIC: simulated candles (seed {market.synthetic_seed}), not Binance market data"
        )
    if gaps:
        metadata["gap_list"] = frame_table(
            pd.DataFrame(gaps[:SHOWN_GAPS], columns=["symbol", "first_missing", "last_missing"])
        )
    return metadata
