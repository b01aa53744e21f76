"""Automation conditions, schedules and sensors evaluated as the daemon evaluates them, on a
persistent temporary instance, and the retention job run against real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    DeleteDynamicPartitionsRequest,
    EvaluateAutomationConditionsResult,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)

from cryptota_core.app.ingest import ingest_series
from cryptota_core.market.frame import CANDLE_COLUMNS, SeriesKey, candle_frame_from_arrays
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.settings import Settings
from cryptota_core.storage.candle_store import CandleStore
from cryptota_pipelines.defs.automation.schedules import candle_retention_schedule
from cryptota_pipelines.defs.ingestion.assets import candles_1m
from cryptota_pipelines.defs.ingestion.checks import candles_1m_checks
from cryptota_pipelines.defs.ingestion.sensors import symbol_universe_sensor
from cryptota_pipelines.defs.rollups.assets import candle_rollups
from cryptota_pipelines.keys import CANDLE_ROLLUPS, CANDLES_1M, STRATEGY_LEADERBOARD
from cryptota_pipelines.partitions import partition_key, range_tags
from cryptota_pipelines.resources import (
    CandleStoreResource,
    MarketSourceResource,
    resources_from_settings,
)
from tests.pipelines.conftest import SYMBOLS


def _market(symbols: list[str]) -> MarketSourceResource:
    return MarketSourceResource(source_name="synthetic", symbols=symbols)


def _evaluate_universe(
    instance: DagsterInstance, symbols: list[str], cursor: str | None
) -> SensorResult | SkipReason:
    """One sensor tick; partition requests applied to the instance as the daemon would."""
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"market": _market(symbols)}
    )
    result = symbol_universe_sensor(context)
    if isinstance(result, SensorResult):
        for request in result.dynamic_partitions_requests or []:
            if isinstance(request, AddDynamicPartitionsRequest):
                instance.add_dynamic_partitions(
                    request.partitions_def_name, list(request.partition_keys)
                )
            else:
                for key in request.partition_keys:
                    instance.delete_dynamic_partition(request.partitions_def_name, key)
    assert isinstance(result, SensorResult | SkipReason)
    return result


def test_symbol_universe_sensor_acts_once_per_change(instance: DagsterInstance) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    first = yesterday - timedelta(days=7)

    created = _evaluate_universe(instance, SYMBOLS, cursor=None)
    assert isinstance(created, SensorResult)
    assert created.cursor == "BTCUSDT,ETHUSDT"
    assert instance.get_dynamic_partitions("symbols") == SYMBOLS
    # Each new symbol gets one run covering its recent days, not one run per day.
    assert [r.tags for r in created.run_requests or []] == [
        {**range_tags(first, yesterday, [s]), "cryptota/trigger": "new_symbol"} for s in SYMBOLS
    ]
    assert len({r.run_key for r in created.run_requests or []}) == 2

    unchanged = _evaluate_universe(instance, SYMBOLS, cursor=created.cursor)
    assert isinstance(unchanged, SkipReason)

    changed = _evaluate_universe(instance, ["BTCUSDT", "SOLUSDT"], cursor=created.cursor)
    assert isinstance(changed, SensorResult)
    requests = changed.dynamic_partitions_requests or []
    assert [(type(r), list(r.partition_keys)) for r in requests] == [
        (AddDynamicPartitionsRequest, ["SOLUSDT"]),
        (DeleteDynamicPartitionsRequest, ["ETHUSDT"]),
    ]
    assert instance.get_dynamic_partitions("symbols") == ["BTCUSDT", "SOLUSDT"]
    assert [r.tags["cryptota/trigger"] for r in changed.run_requests or []] == ["new_symbol"]

    assert isinstance(
        _evaluate_universe(instance, ["BTCUSDT", "SOLUSDT"], changed.cursor), SkipReason
    )


def _tick(
    defs: Definitions,
    instance: DagsterInstance,
    asset: AssetKey,
    when: datetime | None = None,
    cursor: Any = None,
) -> EvaluateAutomationConditionsResult:
    """One evaluation of ``asset``'s automation condition, as default_automation_condition_sensor
    evaluates it: against the instance, at ``when``, continuing from ``cursor``."""
    return evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        asset_selection=AssetSelection.assets(asset),
        evaluation_time=when,
        cursor=cursor,
    )


def _march_20(hour: int, minute: int) -> datetime:
    return datetime(2024, 3, 20, hour, minute, tzinfo=UTC)


def test_the_automation_condition_sensor_is_what_evaluates_the_conditions(
    defs: Definitions,
) -> None:
    """No sensor of ours re-implements them: Dagster's default automation condition sensor
    evaluates every asset that has a condition, and it starts stopped like every sensor."""
    repo = defs.get_repository_def()
    conditioned = {
        key
        for key in repo.asset_graph.get_all_asset_keys()
        if repo.asset_graph.get(key).automation_condition is not None
    }
    assert {CANDLES_1M, CANDLE_ROLLUPS, STRATEGY_LEADERBOARD} <= conditioned
    automation = [s for s in repo.sensor_defs if isinstance(s, AutomationConditionSensorDefinition)]
    assert [s.name for s in automation] == ["default_automation_condition_sensor"]
    assert automation[0].asset_selection.resolve(repo.asset_graph) >= conditioned
    assert automation[0].default_status == DefaultSensorStatus.STOPPED
    assert not [s for s in repo.schedule_defs if "ingestion" in s.name]


@pytest.mark.postgres
def test_nightly_condition_ingests_yesterday_and_repairs_missing_or_failed_days(
    settings: Settings, defs: Definitions, instance_with_symbols: DagsterInstance
) -> None:
    instance = instance_with_symbols
    resources = resources_from_settings(settings)
    # The week before yesterday ingested for both symbols in one range run...
    week = range_tags(date(2024, 3, 12), date(2024, 3, 18), SYMBOLS)
    assert materialize([candles_1m], instance=instance, resources=resources, tags=week).success
    # ...then a failed re-run of one of its days, and a symbol that joined with no data yet.
    broken = {**resources, "market": MarketSourceResource(source_name="kraken")}
    failed = materialize(
        [candles_1m],
        instance=instance,
        resources=broken,
        partition_key=partition_key(date(2024, 3, 15), "BTCUSDT"),
        raise_on_error=False,
    )
    assert not failed.success
    instance.add_dynamic_partitions("symbols", ["SOLUSDT"])

    # The sensor is turned on in the afternoon, long after that day's 00:15 UTC tick: its first
    # evaluation only starts the watch, nothing launches at once. Before the next tick nothing
    # is due either; at it, yesterday and the repairs; then nothing.
    turned_on = _tick(defs, instance, CANDLES_1M, datetime(2024, 3, 19, 14, 31, tzinfo=UTC))
    assert turned_on.total_requested == 0
    afternoon = _tick(
        defs, instance, CANDLES_1M, datetime(2024, 3, 19, 14, 32, tzinfo=UTC), turned_on.cursor
    )
    assert afternoon.total_requested == 0
    before = _tick(
        defs, instance, CANDLES_1M, datetime(2024, 3, 20, 0, 10, tzinfo=UTC), afternoon.cursor
    )
    assert before.total_requested == 0
    nightly = _tick(
        defs, instance, CANDLES_1M, datetime(2024, 3, 20, 0, 16, tzinfo=UTC), before.cursor
    )
    after = _tick(
        defs, instance, CANDLES_1M, datetime(2024, 3, 20, 0, 46, tzinfo=UTC), nightly.cursor
    )
    assert after.total_requested == 0

    repairs = [partition_key(date(2024, 3, 15), "BTCUSDT")] + [
        partition_key(date(2024, 3, d), "SOLUSDT") for d in range(12, 19)
    ]
    yesterday = [partition_key(date(2024, 3, 19), s) for s in [*SYMBOLS, "SOLUSDT"]]
    assert nightly.get_requested_partitions(CANDLES_1M) == set(repairs + yesterday)


def test_nightly_condition_waits_for_the_symbol_universe(
    defs: Definitions, instance: DagsterInstance
) -> None:
    before = _tick(defs, instance, CANDLES_1M, datetime(2024, 3, 20, 0, 10, tzinfo=UTC))
    nightly = _tick(
        defs, instance, CANDLES_1M, datetime(2024, 3, 20, 0, 16, tzinfo=UTC), before.cursor
    )
    assert nightly.total_requested == 0


@pytest.mark.postgres
def test_rollups_follow_any_day_of_candles_that_passed_its_blocking_checks(
    settings: Settings,
    defs: Definitions,
    instance_with_symbols: DagsterInstance,
    store: CandleStore,
) -> None:
    instance = instance_with_symbols
    resources = resources_from_settings(settings)

    def ingest(day: str, *assets: Any) -> bool:
        key = partition_key(day, "BTCUSDT")
        run = materialize(list(assets), instance=instance, resources=resources, partition_key=key,
                          raise_on_error=False)  # fmt: skip
        return run.success

    start = _tick(defs, instance, CANDLE_ROLLUPS)
    assert start.total_requested == 0

    # An old day (far outside eager's latest window) ingested with its checks: its rollups follow.
    assert ingest("2024-01-05", candles_1m, candles_1m_checks)
    follow = _tick(defs, instance, CANDLE_ROLLUPS, cursor=start.cursor)
    assert follow.get_requested_partitions(CANDLE_ROLLUPS) == {"2024-01-05|BTCUSDT"}

    # A run that built the rollups with the candles (candle_ingestion_job) leaves nothing to do.
    assert ingest("2024-01-06", candles_1m, candles_1m_checks, candle_rollups)
    done = _tick(defs, instance, CANDLE_ROLLUPS, cursor=follow.cursor)
    assert done.total_requested == 0

    # A day whose candles fail a blocking check does not get rollups built on them.
    bad = pd.Timestamp("2024-01-07", tz="UTC") + pd.Timedelta(hours=12, seconds=30)
    store.upsert(SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1m"), _broken(bad))
    assert not ingest("2024-01-07", candles_1m, candles_1m_checks)
    blocked = _tick(defs, instance, CANDLE_ROLLUPS, cursor=done.cursor)
    assert blocked.total_requested == 0


def _broken(open_time: pd.Timestamp) -> pd.DataFrame:
    """One candle off the minute grid with high below low and negative volume."""
    values = dict.fromkeys(CANDLE_COLUMNS, np.array([100.0]))
    values.update(high=np.array([90.0]), low=np.array([110.0]), volume=np.array([-5.0]))
    values["trades"] = np.array([1])
    return candle_frame_from_arrays(np.array([open_time.value // 1_000_000]), values)


def test_retention_schedule_runs_only_when_an_age_is_configured(
    instance: DagsterInstance, sqlite_url: str
) -> None:
    def tick(retention_days: int | None) -> Any:
        store = CandleStoreResource(database_url=sqlite_url, retention_days=retention_days)
        with build_schedule_context(
            instance=instance, resources={"candle_store": store}
        ) as context:
            return candle_retention_schedule.evaluate_tick(context)

    off = tick(None)
    assert not off.run_requests and "CRYPTOTA_TIMESCALE_RETENTION_DAYS" in (off.skip_message or "")
    on = tick(30)
    assert [r.run_config for r in on.run_requests or []] == [
        {"ops": {"purge_old_candles": {"config": {"keep_days": 30}}}}
    ]


@pytest.mark.postgres
def test_retention_job_deletes_only_candles_older_than_the_cutoff(
    defs: Definitions, instance: DagsterInstance, store: CandleStore
) -> None:
    source, day = SyntheticSource(seed=7), pd.Timedelta(days=1)
    old = pd.Timestamp("2024-01-01", tz="UTC")
    recent = pd.Timestamp.now(tz="UTC").floor("D") - 2 * day
    for start in (old, recent):
        ingest_series(store, source, "BTCUSDT", "1m", start, start + day)
    series = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1m")

    run_config = {"ops": {"purge_old_candles": {"config": {"keep_days": 30}}}}
    result = defs.get_job_def("candle_retention_job").execute_in_process(
        run_config=run_config, instance=instance
    )

    assert result.success
    assert store.count(series, old, old + day) == 0
    assert store.count(series, recent, recent + day) == 1440
