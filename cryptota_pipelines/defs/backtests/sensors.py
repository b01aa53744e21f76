"""Sensors of the backtest domain.

``param_set_sensor``: the ``param_sets`` partitions follow ``CRYPTOTA_STRATEGY_GRIDS``. Its cursor
is a hash of the grids, so it acts once per change: it registers every parameter set of the grids
in the results store (``backtest_runs`` resolves slugs there) and adds the slugs that have no
partition yet. Slugs that left the grids keep their partitions and stored results.

``reoptimization_sensor``: after ``reoptimize_after_days`` new days of a symbol's candles inside
the backtest window, one run re-backtests every parameter set of that symbol and re-ranks. It
reads the instance's ``candles_1m`` materialisations after the last storage id it saw (the
cursor), so each new batch of candles triggers once; days are counted per symbol until enough
have come in.
"""

import hashlib
import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from dagster import (
    DagsterEventType,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from pydantic import BaseModel

from cryptota_core.backtest.runs import register_param_sets
from cryptota_pipelines.defs.backtests.schedules import backtest_job
from cryptota_pipelines.keys import CANDLES_1M
from cryptota_pipelines.partitions import (
    PARAM_SETS_PARTITIONS,
    SYMBOLS_PARTITIONS,
    backtest_range_tags,
    day_window,
    param_set_partitions,
)
from cryptota_pipelines.resources import BacktestConfigResource, ResultsStoreResource


def grids_digest(grids: Mapping[str, Any]) -> str:
    """A short, order-independent fingerprint of the strategy grids."""
    canonical = json.dumps(grids, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@sensor(
    name="param_set_sensor",
    minimum_interval_seconds=60,
    description="Registers the parameter sets of CRYPTOTA_STRATEGY_GRIDS and adds their param_sets "
    "partitions, once per change of the grids.",
)
def param_set_sensor(
    context: SensorEvaluationContext,
    results_store: ResultsStoreResource,
    backtest_config: BacktestConfigResource,
) -> SensorResult | SkipReason:
    """Act once per change of the grids: register every set, add the missing partitions."""
    digest = grids_digest(backtest_config.strategy_grids)
    if context.cursor == digest:
        return SkipReason(f"strategy grids unchanged ({digest})")
    slugs = register_param_sets(results_store.store(), backtest_config.param_sets())
    existing = set(context.instance.get_dynamic_partitions(PARAM_SETS_PARTITIONS))
    added = [slug for slug in slugs if slug not in existing]
    context.log.info(f"grids {digest}: {len(slugs)} parameter sets, {len(added)} new partitions")
    requests = [param_set_partitions.build_add_request(added)] if added else []
    return SensorResult(dynamic_partitions_requests=requests, cursor=digest)


class ReoptimizationCursor(BaseModel):
    """``after``: the last ``candles_1m`` materialisation seen (storage id); ``days``: the new days
    inside the window counted per symbol since its last re-optimisation."""

    after: int
    days: dict[str, list[date]] = {}


@sensor(
    name="reoptimization_sensor",
    job=backtest_job,
    minimum_interval_seconds=300,
    description="Re-runs every parameter set of a symbol after new days of its candles land in "
    "the backtest window (reoptimize_after_days, default 1), then re-ranks.",
)
def reoptimization_sensor(
    context: SensorEvaluationContext, backtest_config: BacktestConfigResource
) -> SensorResult:
    """Count each symbol's newly materialised days; launch its re-optimisation once enough have
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
    first_day = backtest_config.window().start.date()
    days = {symbol: {d for d in seen if d >= first_day} for symbol, seen in state.days.items()}
    for window in map(day_window, latest):
        if window.start.date() >= first_day:
            days.setdefault(window.symbol, set()).add(window.start.date())
    param_sets = instance.get_dynamic_partitions(PARAM_SETS_PARTITIONS)
    due = [
        symbol
        for symbol in instance.get_dynamic_partitions(SYMBOLS_PARTITIONS)
        if param_sets and len(days.get(symbol, ())) >= backtest_config.reoptimize_after_days
    ]
    after = max(latest.values(), default=state.after)
    runs = [
        RunRequest(
            run_key=f"reoptimize:{symbol}:{after}",
            tags={**backtest_range_tags([symbol], param_sets), "cryptota/trigger": "reoptimize"},
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
    reason = (
        f"new candle days per symbol: {waiting or 'none'}; re-optimising after "
        f"{backtest_config.reoptimize_after_days}"
        if param_sets
        else "no param_sets partitions yet: turn on param_set_sensor"
    )
    return SensorResult(skip_reason=reason, cursor=cursor)
