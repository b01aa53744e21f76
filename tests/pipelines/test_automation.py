"""Schedules and sensors evaluated as the daemon evaluates them, on a persistent temporary instance,
and the retention job run against real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    DagsterInstance,
    Definitions,
    DeleteDynamicPartitionsRequest,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    materialize,
)
from dagster._core.definitions.schedule_definition import ScheduleExecutionData

from cryptota_core.ingest import ingest_series
from cryptota_core.market.frame import SeriesKey
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.settings import Settings
from cryptota_core.storage.candle_store import CandleStore
from cryptota_pipelines.defs.automation.schedules import candle_retention_schedule
from cryptota_pipelines.defs.ingestion.assets import candles_1m
from cryptota_pipelines.defs.ingestion.schedules import nightly_candle_ingestion_schedule
from cryptota_pipelines.defs.ingestion.sensors import symbol_universe_sensor
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


@pytest.mark.postgres
def test_nightly_schedule_ingests_yesterday_and_repairs_missing_or_failed_days(
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

    context = build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2024, 3, 20, 0, 15, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    tick = nightly_candle_ingestion_schedule.evaluate_tick(context)

    requested = [(r.partition_key, r.tags["cryptota/trigger"]) for r in tick.run_requests or []]
    repairs = [partition_key(date(2024, 3, 15), "BTCUSDT")] + [
        partition_key(date(2024, 3, d), "SOLUSDT") for d in range(12, 19)
    ]
    nightly = [partition_key(date(2024, 3, 19), s) for s in [*SYMBOLS, "SOLUSDT"]]
    assert sorted(requested) == sorted(
        [(k, "repair") for k in repairs] + [(k, "nightly") for k in nightly]
    )


def test_nightly_schedule_waits_for_the_symbol_universe(
    defs: Definitions, instance: DagsterInstance
) -> None:
    context = build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2024, 3, 20, 0, 15, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    tick = nightly_candle_ingestion_schedule.evaluate_tick(context)
    assert not tick.run_requests
    assert tick.skip_message is not None and "symbol_universe_sensor" in tick.skip_message


def test_retention_schedule_runs_only_when_an_age_is_configured(
    instance: DagsterInstance, sqlite_url: str
) -> None:
    def tick(retention_days: int | None) -> ScheduleExecutionData:
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
