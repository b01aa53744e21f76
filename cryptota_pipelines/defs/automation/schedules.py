"""Retention clean-up: candles older than the configured age leave the store.

On TimescaleDB the retention policy (``CRYPTOTA_TIMESCALE_RETENTION_DAYS``) already drops old
chunks; on plain PostgreSQL and SQLite this job does the same with the same setting. It deletes
whole UTC days only (the cut-off is midnight), and a launch by hand must state ``keep_days``:
nothing destructive runs on a default.
"""

import pandas as pd
from dagster import (
    Config,
    OpExecutionContext,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    job,
    op,
    schedule,
)
from pydantic import Field

from cryptota_pipelines.resources import CandleStoreResource


class RetentionConfig(Config):
    """How much history to keep."""

    keep_days: int = Field(gt=0, description="Keep candles of the last this many UTC days.")


@op(description="Delete every series' candles opening before the cut-off day.")
def purge_old_candles(
    context: OpExecutionContext, config: RetentionConfig, candle_store: CandleStoreResource
) -> None:
    """``CandleStore.purge_before`` the cut-off day. Returns nothing, so no IO manager writes
    (pickles) an output."""
    cutoff = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=config.keep_days)
    deleted = candle_store.store().purge_before(cutoff)
    context.log.info(f"deleted {deleted} candles opening before {cutoff.isoformat()}")


@job(description="Retention clean-up of the candle store.", tags={"cryptota/trigger": "retention"})
def candle_retention_job() -> None:
    purge_old_candles()


@schedule(
    job=candle_retention_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    name="candle_retention_schedule",
    description="Daily at 03:30 UTC: purge candles older than CRYPTOTA_TIMESCALE_RETENTION_DAYS.",
)
def candle_retention_schedule(
    context: ScheduleEvaluationContext, candle_store: CandleStoreResource
) -> RunRequest | SkipReason:
    """Run the purge with the configured age, or skip, saying why, when retention is off."""
    if candle_store.retention_days is None:
        return SkipReason("retention is off: set CRYPTOTA_TIMESCALE_RETENTION_DAYS to purge")
    config = RetentionConfig(keep_days=candle_store.retention_days)
    return RunRequest(run_config={"ops": {"purge_old_candles": {"config": config.model_dump()}}})
