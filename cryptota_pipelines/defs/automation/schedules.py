"""Retention clean-up: candles and backtest runs older than the configured ages leave the stores.

On TimescaleDB the retention policy (``CRYPTOTA_TIMESCALE_RETENTION_DAYS``) already drops old
chunks; on plain PostgreSQL and SQLite ``candle_retention_job`` does the same with the same setting.
``results_retention_job`` deletes backtest runs (with their trades and equity curves) created before
the cut-off; parameter sets stay. Both cut at midnight UTC, and a launch by hand must state
``keep_days``: nothing destructive runs on a default.
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

from cryptota_pipelines.resources import (
    CandleStoreResource,
    ResultsStoreResource,
)


class RetentionConfig(Config):
    """How much history to keep."""

    keep_days: int = Field(gt=0, description="Keep what is younger than this many UTC days.")


def retention_cutoff(keep_days: int) -> pd.Timestamp:
    """Midnight UTC ``keep_days`` days before today."""
    return pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=keep_days)


@op(description="Delete every series' candles opening before the cut-off day.")
def purge_old_candles(
    context: OpExecutionContext,
    config: RetentionConfig,
    candle_store: CandleStoreResource,
) -> None:
    """``CandleStore.purge_before`` the cut-off day. Returns nothing, so no IO manager writes
    (pickles) an output."""
    cutoff = retention_cutoff(config.keep_days)
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


@op(description="Delete the backtest runs created before the cut-off day, trades and equity too.")
def purge_old_backtest_runs(
    context: OpExecutionContext,
    config: RetentionConfig,
    results_store: ResultsStoreResource,
) -> None:
    """``ResultsStore.purge_before`` the cut-off day (parameter sets are kept)."""
    cutoff = retention_cutoff(config.keep_days)
    deleted = results_store.store().purge_before(cutoff)
    context.log.info(f"deleted {deleted} backtest runs created before {cutoff.isoformat()}")


@job(description="Retention clean-up of the results store.", tags={"cryptota/trigger": "retention"})
def results_retention_job() -> None:
    purge_old_backtest_runs()


@schedule(
    job=results_retention_job,
    cron_schedule="45 3 * * *",
    execution_timezone="UTC",
    name="results_retention_schedule",
    description="Daily at 03:45 UTC: purge backtest runs older than "
    "CRYPTOTA_RESULTS_RETENTION_DAYS.",
)
def results_retention_schedule(
    context: ScheduleEvaluationContext, results_store: ResultsStoreResource
) -> RunRequest | SkipReason:
    """Run the purge with the configured age, or skip, saying why, when retention is off."""
    if results_store.retention_days is None:
        return SkipReason("results retention is off: set CRYPTOTA_RESULTS_RETENTION_DAYS to purge")
    config = RetentionConfig(keep_days=results_store.retention_days)
    return RunRequest(
        run_config={"ops": {"purge_old_backtest_runs": {"config": config.model_dump()}}}
    )
