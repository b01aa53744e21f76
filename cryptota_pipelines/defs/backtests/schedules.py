"""The backtest job and its schedules (the old Celery Beat's nightly backtests and weekly
walk-forward).

A refresh is one run covering every parameter set on every symbol: the run's partition range is
the rectangle between the first and the last ``backtest_runs`` key, and the asset's single-run
backfill policy lets it loop over all of them in one step.
"""

from datetime import datetime

from dagster import (
    AssetSelection,
    DagsterInstance,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    in_process_executor,
    schedule,
)

from cryptota_pipelines.partitions import (
    PARAM_SETS_PARTITIONS,
    SYMBOLS_PARTITIONS,
    backtest_range_tags,
)

backtest_job = define_asset_job(
    "backtest_job",
    selection=AssetSelection.assets("backtest_runs", "strategy_leaderboard"),
    description="backtest_runs, its checks and strategy_leaderboard for the partitions of the run.",
    # The three steps form a chain (backtests → blocking checks → leaderboard): a process per
    # step would only add its start-up (seconds of imports) to each.
    executor_def=in_process_executor,
)


def full_refresh_request(
    instance: DagsterInstance, trigger: str, run_key: str | None = None
) -> RunRequest | SkipReason:
    """One run of ``backtest_job`` over every symbol × parameter set, or why there is none."""
    symbols = instance.get_dynamic_partitions(SYMBOLS_PARTITIONS)
    param_sets = instance.get_dynamic_partitions(PARAM_SETS_PARTITIONS)
    if not symbols:
        return SkipReason("no symbol partitions yet: turn on symbol_universe_sensor")
    if not param_sets:
        return SkipReason("no param_sets partitions yet: turn on param_set_sensor")
    return RunRequest(
        run_key=run_key,
        tags={**backtest_range_tags(symbols, param_sets), "cryptota/trigger": trigger},
    )


def _tick_key(trigger: str, when: datetime) -> str:
    return f"{trigger}:{when.isoformat()}"


@schedule(
    job=backtest_job,
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    name="nightly_backtest_schedule",
    description="Every parameter set on every symbol over the window ending today, in one run, "
    "then the leaderboard (after the 00:15 candle ingestion).",
)
def nightly_backtest_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    """The nightly refresh: one range run over all backtest partitions."""
    return full_refresh_request(
        context.instance, "nightly", _tick_key("nightly", context.scheduled_execution_time)
    )
