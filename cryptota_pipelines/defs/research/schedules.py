"""When the research runs on a clock: ``walk_forward_job`` (``walk_forward_report``) for every
symbol on ``weekly_walk_forward_schedule``, the old service's weekly walk-forward task.
"""

from dagster import (
    AssetSelection,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from cryptota_pipelines.keys import (
    WALK_FORWARD_REPORT,
)
from cryptota_pipelines.partitions import SYMBOLS_PARTITIONS

walk_forward_job = define_asset_job(
    "walk_forward_job",
    selection=AssetSelection.assets(WALK_FORWARD_REPORT),
    description="Walk-forward analysis of one symbol (every configured strategy).",
)


@schedule(
    job=walk_forward_job,
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    name="weekly_walk_forward_schedule",
    description="Sundays 03:00 UTC: walk_forward_report for every symbol, one run each.",
)
def weekly_walk_forward_schedule(
    context: ScheduleEvaluationContext,
) -> list[RunRequest] | SkipReason:
    """One walk-forward run per symbol of the universe."""
    symbols = context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS)
    if not symbols:
        return SkipReason("no symbol partitions yet: turn on symbol_universe_sensor")
    tick = context.scheduled_execution_time.isoformat()
    return [
        RunRequest(
            partition_key=symbol,
            run_key=f"weekly-walk-forward:{symbol}:{tick}",
            tags={"cryptota/trigger": "weekly"},
        )
        for symbol in symbols
    ]
