"""What re-optimises a symbol: ``optimization_job`` (``parameter_optimization`` then
``trading_signals``, one symbol a run), launched by ``reoptimization_sensor`` after
``reoptimize_after_days`` new days of a symbol's candles and by ``performance_drift_sensor`` when
the symbol's current best parameters fall below their walk-forward expectation.

Both sensors react to things Dagster cannot declare (how many *new* days arrived; how a strategy
performs on them), so they stay sensors; ``trading_signals`` follows its upstreams through an
``AutomationCondition`` instead.
"""

from datetime import UTC, date, datetime

from dagster import (
    AssetSelection,
    DagsterEventType,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    define_asset_job,
    sensor,
)
from pydantic import BaseModel

from cryptota_core.app.research import drift_symbol
from cryptota_pipelines.keys import (
    CANDLES_1M,
    PARAMETER_OPTIMIZATION,
    TRADING_SIGNALS,
)
from cryptota_pipelines.partitions import SYMBOLS_PARTITIONS, day_window
from cryptota_pipelines.resources import (
    BacktestConfigResource,
    CandleStoreResource,
    ResearchConfigResource,
    ResearchStoreResource,
)

optimization_job = define_asset_job(
    "optimization_job",
    selection=AssetSelection.assets(PARAMETER_OPTIMIZATION, TRADING_SIGNALS),
    description="Re-optimise one symbol (every configured strategy) and place the new best "
    "parameters' latest signals as paper orders.",
)


class ReoptimizationCursor(BaseModel):
    """``after``: the last ``candles_1m`` materialisation seen (storage id); ``days``: the new days
    inside the optimisation window counted per symbol since its last re-optimisation."""

    after: int
    days: dict[str, list[date]] = {}


@sensor(
    name="reoptimization_sensor",
    job=optimization_job,
    minimum_interval_seconds=300,
    description="Re-optimises a symbol (parameter_optimization, then trading_signals) after "
    "reoptimize_after_days new days of its candles land in the optimisation window.",
)
def reoptimization_sensor(
    context: SensorEvaluationContext,
    backtest_config: BacktestConfigResource,
    research_config: ResearchConfigResource,
) -> SensorResult:
    """Count each symbol's newly materialised days; request its optimisation once enough have
    come. The first evaluation starts watching from the latest materialisation: what was there
    before the sensor was turned on is the nightly refresh's."""
    instance = context.instance
    if context.cursor is None:
        newest = instance.fetch_materializations(CANDLES_1M, limit=1).records
        after = newest[0].storage_id if newest else 0
        return SensorResult(
            skip_reason=f"watching candles_1m materialisations after storage id {after}",
            cursor=ReoptimizationCursor(after=after).model_dump_json(),
        )
    state = ReoptimizationCursor.model_validate_json(context.cursor)
    latest = instance.get_latest_storage_id_by_partition(
        CANDLES_1M, DagsterEventType.ASSET_MATERIALIZATION, after_cursor=state.after
    )
    first_day = research_config.config().optimization_window().start.date()
    days = {symbol: {d for d in seen if d >= first_day} for symbol, seen in state.days.items()}
    for window in map(day_window, latest):
        if window.start.date() >= first_day:
            days.setdefault(window.symbol, set()).add(window.start.date())
    needed = backtest_config.reoptimize_after_days
    due = [
        symbol
        for symbol in instance.get_dynamic_partitions(SYMBOLS_PARTITIONS)
        if len(days.get(symbol, ())) >= needed
    ]
    after = max(latest.values(), default=state.after)
    runs = [
        RunRequest(
            partition_key=symbol,
            run_key=f"reoptimize:{symbol}:{after}",
            tags={"cryptota/trigger": "reoptimize"},
        )
        for symbol in due
    ]
    for symbol in due:
        del days[symbol]
    cursor = ReoptimizationCursor(
        after=after, days={symbol: sorted(seen) for symbol, seen in days.items() if seen}
    ).model_dump_json()
    if runs:
        return SensorResult(run_requests=runs, cursor=cursor)
    waiting = {symbol: len(seen) for symbol, seen in days.items() if seen}
    return SensorResult(
        skip_reason=f"new candle days per symbol: {waiting or 'none'}; "
        f"re-optimising after {needed}",
        cursor=cursor,
    )


@sensor(
    name="performance_drift_sensor",
    job=optimization_job,
    minimum_interval_seconds=3600,
    description="Re-optimises a symbol when a strategy's current best parameters earn, over the "
    "last CRYPTOTA_DRIFT_DAYS days, a Sharpe ratio more than CRYPTOTA_DRIFT_SIGMAS standard "
    "deviations below their walk-forward out-of-sample expectation.",
)
def performance_drift_sensor(
    context: SensorEvaluationContext,
    candle_store: CandleStoreResource,
    research_store: ResearchStoreResource,
    research_config: ResearchConfigResource,
) -> SensorResult:
    """Check every symbol; request one re-optimisation per drifted symbol and UTC day."""
    config = research_config.config()
    day = datetime.now(UTC).date().isoformat()
    requests = []
    verdicts = []
    for symbol in context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS):
        checks = drift_symbol(candle_store.store(), research_store.store(), symbol, config)
        verdicts += [f"{symbol}: {check.explain()}" for check in checks]
        drifted = [check for check in checks if check.drifted]
        if drifted:
            requests.append(
                RunRequest(
                    partition_key=symbol,
                    run_key=f"drift:{symbol}:{day}",
                    tags={
                        "cryptota/trigger": "drift",
                        "cryptota/drifted": ",".join(check.slug for check in drifted),
                    },
                )
            )
    for line in verdicts:
        context.log.info(line)
    if requests:
        return SensorResult(run_requests=requests)
    return SensorResult(
        skip_reason="; ".join(verdicts)
        or "no symbol has both an optimisation and a walk-forward yet"
    )
