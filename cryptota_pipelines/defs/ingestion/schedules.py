"""The candle ingestion job and its nightly schedule (the old Celery Beat's ingestion tasks).

At 00:15 UTC, once yesterday's last candle has closed, the schedule asks for yesterday of every
symbol and repairs the week before it: any of those days whose partition the instance does not
have materialised (never run, or failed) is requested again, unless a run for it is in progress.
"""

from collections.abc import Iterator

from dagster import (
    AssetPartitionStatus,
    AssetSelection,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from cryptota_pipelines.defs.ingestion.assets import candles_1m
from cryptota_pipelines.partitions import (
    CANDLE_PARTITIONS,
    SYMBOLS_PARTITIONS,
    partition_key,
    previous_days,
    utc_day,
)

REPAIR_WINDOW_DAYS = 7
"""How many days before yesterday the nightly schedule re-requests when they are missing."""

candle_ingestion_job = define_asset_job(
    "candle_ingestion_job",
    selection=AssetSelection.assets("candles_1m", "candle_rollups"),
    description="candles_1m, its checks and candle_rollups for the partitions of the run.",
)


@schedule(
    job=candle_ingestion_job,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    name="nightly_candle_ingestion_schedule",
    description="Yesterday's candles for every symbol, plus the missing or failed days of the "
    f"{REPAIR_WINDOW_DAYS} days before.",
)
def nightly_candle_ingestion_schedule(
    context: ScheduleEvaluationContext,
) -> Iterator[RunRequest | SkipReason]:
    """One run per symbol for yesterday, and one per missing day of the repair window."""
    symbols = context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS)
    if not symbols:
        yield SkipReason("no symbol partitions yet: turn on symbol_universe_sensor")
        return
    *repair_days, yesterday = previous_days(
        utc_day(context.scheduled_execution_time), REPAIR_WINDOW_DAYS + 1
    )
    repair_keys = [partition_key(day, symbol) for day in repair_days for symbol in symbols]
    status = (
        context.instance.get_status_by_partition(candles_1m.key, repair_keys, CANDLE_PARTITIONS)
        or {}
    )
    done = (AssetPartitionStatus.MATERIALIZED, AssetPartitionStatus.IN_PROGRESS)
    for key in repair_keys:
        if status.get(key) not in done:
            yield RunRequest(run_key=key, partition_key=key, tags={"cryptota/trigger": "repair"})
    for symbol in symbols:
        key = partition_key(yesterday, symbol)
        yield RunRequest(run_key=key, partition_key=key, tags={"cryptota/trigger": "nightly"})
