"""candles_1m and candle_rollups materialised in-process on real PostgreSQL with the synthetic
market: single partitions, a key range in one run (twice: idempotent), and blocking checks."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetPartitionStatus,
    AssetSelection,
    DagsterInstance,
    ExecuteInProcessResult,
    materialize,
)

from cryptota_core.market.frame import CANDLE_COLUMNS, SeriesKey, candle_frame_from_arrays
from cryptota_core.settings import Settings
from cryptota_core.storage.candle_store import CandleStore
from cryptota_pipelines.defs.ingestion.assets import candles_1m
from cryptota_pipelines.defs.ingestion.checks import candles_1m_checks
from cryptota_pipelines.defs.rollups.assets import candle_rollups
from cryptota_pipelines.partitions import CANDLE_PARTITIONS, partition_key, range_tags
from cryptota_pipelines.resources import MarketSourceResource, resources_from_settings
from tests.pipelines.conftest import SYMBOLS

pytestmark = pytest.mark.postgres

ASSETS = [candles_1m, candles_1m_checks, candle_rollups]
DAY = pd.Timedelta(days=1)


def _series(symbol: str) -> SeriesKey:
    return SeriesKey(exchange="synthetic", symbol=symbol, interval="1m")


def _metadata(result: ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """Metadata values of the (first) materialisation of ``asset`` in the run."""
    events = result.asset_materializations_for_node(asset)
    assert events, f"{asset} was not materialised"
    return {k: v.value for k, v in events[0].metadata.items()}


def _check_results(result: ExecuteInProcessResult) -> dict[str, tuple[bool, AssetCheckSeverity]]:
    return {e.check_name: (e.passed, e.severity) for e in result.get_asset_check_evaluations()}


def _materialize(
    settings: Settings, instance: DagsterInstance, **kwargs: Any
) -> ExecuteInProcessResult:
    return materialize(
        ASSETS, instance=instance, resources=resources_from_settings(settings), **kwargs
    )


def test_each_partition_stores_one_utc_day_and_reports_it(
    settings: Settings, instance_with_symbols: DagsterInstance, store: CandleStore
) -> None:
    days = [date(2024, 3, 9), date(2024, 3, 10)]
    for day in days:
        for symbol in SYMBOLS:
            result = _materialize(
                settings, instance_with_symbols, partition_key=partition_key(day, symbol)
            )
            assert result.success
            start = pd.Timestamp(day, tz="UTC")
            series = _series(symbol)
            assert store.count(series, start, start + DAY) == 1440

            candles = _metadata(result, "candles_1m")
            assert candles["rows"] == candles["expected"] == candles["dagster/row_count"] == 1440
            assert candles["gaps"] == candles["missing_candles"] == 0
            assert candles["first_candle"] == start.isoformat()
            assert candles["last_candle"] == (start + DAY - pd.Timedelta(minutes=1)).isoformat()
            assert candles["fingerprint"] == store.fingerprint(series, start, start + DAY)
            assert candles["exchange"] == "synthetic"
            assert "SYNTHETIC" in candles["data_warning"]

            rollups = _metadata(result, "candle_rollups")
            assert (rollups["candles_15m"], rollups["candles_1h"]) == (96, 24)
            assert (rollups["candles_4h"], rollups["candles_1d"]) == (6, 1)
            assert all(passed for passed, _ in _check_results(result).values())

    keys = [partition_key(day, symbol) for day in days for symbol in SYMBOLS]
    for asset in ("candles_1m", "candle_rollups"):
        status = instance_with_symbols.get_status_by_partition(
            AssetKey(asset), keys, CANDLE_PARTITIONS
        )
        assert status == dict.fromkeys(keys, AssetPartitionStatus.MATERIALIZED)
    # The two symbols are different markets, not copies of one another.
    first = pd.Timestamp(days[0], tz="UTC")
    assert store.fingerprint(_series("BTCUSDT"), first, first + DAY) != store.fingerprint(
        _series("ETHUSDT"), first, first + DAY
    )


def test_key_range_is_one_run_and_rerunning_it_leaves_one_copy(
    settings: Settings, instance_with_symbols: DagsterInstance, store: CandleStore
) -> None:
    first, last = date(2024, 1, 1), date(2024, 1, 10)
    start, end = pd.Timestamp(first, tz="UTC"), pd.Timestamp(last, tz="UTC") + DAY
    tags = range_tags(first, last, SYMBOLS)

    result = _materialize(settings, instance_with_symbols, tags=tags)
    assert result.success
    assert len(instance_with_symbols.get_runs()) == 1
    materialized = instance_with_symbols.get_materialized_partitions(AssetKey("candles_1m"))
    assert len(materialized) == 20 and partition_key(last, "ETHUSDT") in materialized
    assert len(instance_with_symbols.get_materialized_partitions(AssetKey("candle_rollups"))) == 20
    candles = _metadata(result, "candles_1m")
    assert candles["series"] == 2  # one ingest call per symbol, not one per partition
    assert candles["rows"] == candles["written"] == candles["expected"] == 2 * 10 * 1440
    assert _metadata(result, "candle_rollups")["candles_1d"] == 2 * 10
    fingerprints = {s: store.fingerprint(_series(s), start, end) for s in SYMBOLS}
    assert all(store.count(_series(s), start, end) == 10 * 1440 for s in SYMBOLS)

    again = _materialize(settings, instance_with_symbols, tags=tags)
    assert again.success
    assert len(instance_with_symbols.get_runs()) == 2
    assert _metadata(again, "candles_1m")["written"] == 0  # identical candles are not rewritten
    assert all(store.count(_series(s), start, end) == 10 * 1440 for s in SYMBOLS)
    assert all(store.summary(_series(s)).rows == 10 * 1440 for s in SYMBOLS)
    assert {s: store.fingerprint(_series(s), start, end) for s in SYMBOLS} == fingerprints


def _broken_candle(open_time: pd.Timestamp) -> pd.DataFrame:
    """A candle written behind ingestion's back: high below low and negative volume."""
    values = dict.fromkeys(CANDLE_COLUMNS, np.array([100.0]))
    values.update(high=np.array([90.0]), low=np.array([110.0]), volume=np.array([-5.0]))
    values["trades"] = np.array([1])
    return candle_frame_from_arrays(np.array([open_time.value // 1_000_000]), values)


def test_failing_blocking_check_stops_candle_rollups_in_the_same_run(
    settings: Settings, instance_with_symbols: DagsterInstance, store: CandleStore
) -> None:
    day = pd.Timestamp("2024-02-01", tz="UTC")
    # Off the minute grid, so re-ingesting the day cannot overwrite it.
    store.upsert(_series("BTCUSDT"), _broken_candle(day + pd.Timedelta(hours=12, seconds=30)))

    result = _materialize(
        settings,
        instance_with_symbols,
        partition_key=partition_key(day.date(), "BTCUSDT"),
        raise_on_error=False,
    )

    assert not result.success
    assert [e.step_key for e in result.get_step_failure_events()] == ["candles_1m_checks"]
    assert result.asset_materializations_for_node("candles_1m")  # the day itself was ingested
    checks = _check_results(result)
    assert checks["ohlc_sanity"] == (False, AssetCheckSeverity.ERROR)
    assert checks["volume_non_negative"] == (False, AssetCheckSeverity.ERROR)
    assert checks["no_duplicates"][0] and checks["no_future_candles"][0]
    assert not result.asset_materializations_for_node("candle_rollups")
    assert (
        instance_with_symbols.get_latest_materialization_event(AssetKey("candle_rollups")) is None
    )


def test_missing_candles_warn_and_an_empty_day_blocks(
    settings: Settings, instance_with_symbols: DagsterInstance, store: CandleStore
) -> None:
    day = pd.Timestamp("2024-02-02", tz="UTC")
    key = partition_key(day.date(), "ETHUSDT")
    assert _materialize(settings, instance_with_symbols, partition_key=key).success
    recheck = AssetSelection.checks_for_assets(candles_1m) | AssetSelection.assets(candle_rollups)

    # An exchange outage of 30 minutes: a warning, and the rollups still refresh.
    store.delete_range(
        _series("ETHUSDT"), day + pd.Timedelta(hours=3), day + pd.Timedelta(hours=3, minutes=30)
    )
    result = _materialize(settings, instance_with_symbols, partition_key=key, selection=recheck)
    assert result.success
    assert _check_results(result)["completeness"] == (False, AssetCheckSeverity.WARN)
    assert _metadata(result, "candle_rollups")["candles_15m"] == 96 - 2

    # Nothing at all for the day: an error, and the rollups are not materialised.
    store.delete_range(_series("ETHUSDT"), day, day + DAY)
    result = _materialize(
        settings, instance_with_symbols, partition_key=key, selection=recheck, raise_on_error=False
    )
    assert not result.success
    assert [e.step_key for e in result.get_step_failure_events()] == ["candles_1m_checks"]
    assert _check_results(result)["completeness"] == (False, AssetCheckSeverity.ERROR)
    assert not result.asset_materializations_for_node("candle_rollups")


def test_unusable_source_fails_at_once_without_retries(
    settings: Settings, instance_with_symbols: DagsterInstance
) -> None:
    """A bad source name is the operator's to fix: the retry policy must not wait it out."""
    resources = {
        **resources_from_settings(settings),
        "market": MarketSourceResource(source_name="kraken"),
    }
    result = materialize(
        ASSETS,
        instance=instance_with_symbols,
        resources=resources,
        partition_key=partition_key(date(2024, 2, 3), "BTCUSDT"),
        raise_on_error=False,
    )
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "candles_1m"
    assert "synthetic" in str(failure.step_failure_data.error)  # the core's one-line hint
