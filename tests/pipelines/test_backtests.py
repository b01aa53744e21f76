"""backtest_runs, its checks and strategy_leaderboard materialised in-process on real PostgreSQL
over synthetic candles; the backtest sensors and schedules evaluated as the daemon evaluates them;
the results retention job run for real."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    EvaluateAutomationConditionsResult,
    ExecuteInProcessResult,
    SensorResult,
    SkipReason,
    TableMetadataValue,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)
from sqlalchemy import text

from cryptota_core.app.backtests import run_and_store
from cryptota_core.app.ingest import ingest_series
from cryptota_core.backtest.runs import backtest_window, expand_param_grids
from cryptota_core.display import metadata_number
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.settings import Settings
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.results_store import ResultsStore
from cryptota_pipelines.defs.automation.schedules import results_retention_schedule
from cryptota_pipelines.defs.backtests.assets import backtest_runs, strategy_leaderboard
from cryptota_pipelines.defs.backtests.checks import backtest_runs_checks
from cryptota_pipelines.defs.backtests.schedules import (
    nightly_backtest_schedule,
)
from cryptota_pipelines.defs.backtests.sensors import param_set_sensor
from cryptota_pipelines.keys import STRATEGY_LEADERBOARD
from cryptota_pipelines.partitions import (
    backtest_partition_key,
    backtest_range_tags,
)
from cryptota_pipelines.resources import (
    BacktestConfigResource,
    ResultsStoreResource,
    resources_from_settings,
)
from tests.pipelines.conftest import SYMBOLS

pytestmark = pytest.mark.postgres

GRIDS: dict[str, dict[str, list[Any]]] = {
    "rsi": {"period": [7, 14], "oversold": [30], "overbought": [70]},
    "rsi_ma": {"period": [14], "oversold": [30], "overbought": [70], "ma_period": [20]},
}
SLUGS = [p.slug for p in expand_param_grids(GRIDS)]
WINDOW_DAYS = 7
ASSETS = [backtest_runs, backtest_runs_checks, strategy_leaderboard]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with a short window (7 days of 1h candles) and a 3-set grid."""
    return settings.model_copy(update={"backtest_days": WINDOW_DAYS, "strategy_grids": GRIDS})


@pytest.fixture
def results(settings: Settings) -> Iterator[ResultsStore]:
    store = ResultsStore.from_url(settings.resolved_database_url)
    yield store
    store.engine.dispose()


def _ingest_window(store: CandleStore, settings: Settings, symbols: list[str]) -> None:
    """Synthetic 1m candles for every day of the backtest window (the core call, for speed)."""
    window = backtest_window(settings.backtest_interval, settings.backtest_days)
    for symbol in symbols:
        ingest_series(store, SyntheticSource(seed=42), symbol, "1m", window.start, window.end)


def _apply(instance: DagsterInstance, result: SensorResult | SkipReason) -> None:
    """Apply a sensor's partition requests to the instance, as the daemon does."""
    if isinstance(result, SensorResult):
        for request in result.dynamic_partitions_requests or []:
            assert isinstance(request, AddDynamicPartitionsRequest)
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )


def _evaluate_param_sets(
    instance: DagsterInstance, resources: dict[str, Any], cursor: str | None
) -> SensorResult | SkipReason:
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = param_set_sensor(context)
    assert isinstance(result, SensorResult | SkipReason)
    _apply(instance, result)
    return result


def _materialize(
    settings: Settings, instance: DagsterInstance, **kwargs: Any
) -> ExecuteInProcessResult:
    return materialize(
        ASSETS, instance=instance, resources=resources_from_settings(settings), **kwargs
    )


def _metadata_by_partition(result: ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    return {
        str(event.partition): {k: v.value for k, v in event.metadata.items()}
        for event in result.asset_materializations_for_node("backtest_runs")
    }


def _checks(result: ExecuteInProcessResult) -> dict[str, tuple[bool, AssetCheckSeverity]]:
    return {e.check_name: (e.passed, e.severity) for e in result.get_asset_check_evaluations()}


def test_every_param_set_on_both_symbols_is_one_run_and_a_rerun_keeps_one_result_each(
    settings: Settings,
    instance_with_symbols: DagsterInstance,
    store: CandleStore,
    results: ResultsStore,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRYPTOTA_REDIS_URL", redis_url)
    settings = settings.model_copy(update={"redis_url": redis_url})
    instance = instance_with_symbols
    _ingest_window(store, settings, SYMBOLS)
    _evaluate_param_sets(instance, resources_from_settings(settings), cursor=None)
    assert instance.get_dynamic_partitions("param_sets") == SLUGS
    tags = backtest_range_tags(SYMBOLS, SLUGS)

    first = _materialize(settings, instance, tags=tags)

    assert first.success
    assert len(instance.get_runs()) == 1
    partitions = {str(backtest_partition_key(s, p)) for s in SYMBOLS for p in SLUGS}
    assert instance.get_materialized_partitions(AssetKey("backtest_runs")) == partitions
    assert results.count_runs() == len(partitions) == 6
    metadata = _metadata_by_partition(first)
    assert set(metadata) == partitions
    for partition, meta in metadata.items():
        stored = results.load_backtest(meta["run_key"])
        assert stored.run_id == first.run_id
        assert f"{stored.result.slug}|{stored.symbol}" == partition
        # Four significant digits in the UI; the store keeps the exact figure.
        sharpe = stored.result.metrics["sharpe_ratio"]
        assert meta["sharpe_ratio"] == metadata_number("sharpe_ratio", sharpe)
        assert isinstance(meta["trade_count"], int) and "total_return %" in meta
        assert meta["open_trades"] == int(stored.result.metrics["open_trades"] or 0)
        assert meta["bars"] == WINDOW_DAYS * 24 and meta["cached"] is False
        assert meta["runs"] == 6 and meta["cached_runs"] == 0
        headline = [r.data for r in meta["headline_metrics"].records]
        assert {(r["symbol"], r["param_set"]) for r in headline} == {
            (s, p) for s in SYMBOLS for p in SLUGS
        }
        sharpes = [r["Sharpe"] for r in headline]  # best first, undefined (None) last
        defined = [v for v in sharpes if v is not None]
        assert sharpes == sorted(defined, reverse=True) + [None] * (len(sharpes) - len(defined))
        assert "SYNTHETIC" in meta["data_warning"]
    for meta in metadata.values():  # every partition shows its curve inline (< 1,000 chars)
        assert next(iter(meta)) == "equity_preview"  # first on the page: the UI keeps the order
        assert meta["equity_preview"].startswith("![equity of ")
        assert len(meta["equity_preview"]) < 1_000
    (best,) = [p for p, meta in metadata.items() if "equity_curve" in meta]
    assert metadata[best]["equity_curve"].startswith("![equity curve of")
    assert "(data:image/png;base64,iVBORw0KGgo" in metadata[best]["equity_curve"]
    assert metadata[best]["best_run"] == best
    assert _checks(first) == {
        "metrics_finite_or_null": (True, AssetCheckSeverity.ERROR),
        "equity_matches_trades": (True, AssetCheckSeverity.ERROR),
    }

    # The leaderboard is a typed table (sortable in the UI) in ranking order, best first.
    board = results.leaderboard(metric="sharpe_ratio")
    (event,) = first.asset_materializations_for_node("strategy_leaderboard")
    for symbol in SYMBOLS:
        table = event.metadata[f"{symbol}/leaderboard"]
        assert isinstance(table, TableMetadataValue) and table.schema is not None
        types = {column.name: column.type for column in table.schema.columns}
        # chosen columns under compact headers fit the page; the full rows are JSON
        assert list(types) == ["slug", "Sharpe", "return %", "max DD %", "trades", "note"]
        assert types["Sharpe"] == "float" and types["trades"] == "int"
        assert types["note"] == "string"
        ranked = board[board["symbol"] == symbol]
        assert [r.data["slug"] for r in table.records] == list(ranked["slug"])
        assert sorted(r.data["slug"] for r in table.records) == sorted(SLUGS)
    rows = event.metadata["leaderboard_rows"].value
    assert [r["run_key"] for r in rows] == list(board["run_key"])
    assert [(r["symbol"], r["strategy"], r["rank"], r["slug"]) for r in rows] == list(
        board[["symbol", "strategy", "rank", "slug"]].itertuples(index=False, name=None)
    )
    assert {"window_start", "window_end", "engine", "equity_final", "params"} <= set(rows[0])
    windows = event.metadata["windows"].value
    assert f"- BTCUSDT 1h, SYNTHETIC candles: {board['window_start'].iloc[0]:%Y-%m-%d %H:%M}" in (
        windows
    )
    assert "SYNTHETIC" in event.metadata["data_warning"].value
    assert event.metadata["rows"].value == 6

    # Again: the same six results (overwritten, not duplicated), now served from the cache.
    again = _materialize(settings, instance, tags=tags)
    assert again.success
    assert len(instance.get_runs()) == 2
    assert results.count_runs() == 6
    rerun = _metadata_by_partition(again)
    assert {p: m["run_key"] for p, m in rerun.items()} == {
        p: m["run_key"] for p, m in metadata.items()
    }
    assert all(m["cached"] and m["cached_runs"] == 6 for m in rerun.values())
    assert all(results.load_backtest(m["run_key"]).run_id == again.run_id for m in rerun.values())


def test_checks_fail_on_tampered_stored_results_and_block_the_leaderboard(
    settings: Settings,
    instance_with_symbols: DagsterInstance,
    store: CandleStore,
    results: ResultsStore,
) -> None:
    instance = instance_with_symbols
    _ingest_window(store, settings, ["BTCUSDT"])
    _evaluate_param_sets(instance, resources_from_settings(settings), cursor=None)
    tags = backtest_range_tags(["BTCUSDT"], SLUGS)
    done = _materialize(settings, instance, tags=tags)
    assert done.success
    run_keys = {p: m["run_key"] for p, m in _metadata_by_partition(done).items()}
    first, second = (str(backtest_partition_key("BTCUSDT", slug)) for slug in SLUGS[:2])
    infinite, inconsistent = run_keys[first], run_keys[second]
    with results.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE backtest_results SET metrics = "
                "jsonb_set(metrics::jsonb, '{sharpe_ratio}', '\"inf\"')::json WHERE run_key = :k"
            ),
            {"k": infinite},
        )
        conn.execute(
            text(
                "UPDATE equity_curves SET equity = equity + 50 WHERE run_key = :k AND open_time = "
                "(SELECT max(open_time) FROM equity_curves WHERE run_key = :k)"
            ),
            {"k": inconsistent},
        )

    # Re-check every stored partition without re-running the backtests, then rank.
    recheck = AssetSelection.checks_for_assets(backtest_runs) | AssetSelection.assets(
        strategy_leaderboard
    )
    result = _materialize(settings, instance, selection=recheck, raise_on_error=False)

    assert not result.success
    assert [e.step_key for e in result.get_step_failure_events()] == ["backtest_runs_checks"]
    assert _checks(result) == {
        "metrics_finite_or_null": (False, AssetCheckSeverity.ERROR),
        "equity_matches_trades": (False, AssetCheckSeverity.ERROR),
    }
    evaluations = {e.check_name: e.metadata for e in result.get_asset_check_evaluations()}
    metric_problems = evaluations["metrics_finite_or_null"]["problems"].value
    assert metric_problems == {first: "sharpe_ratio='inf'"}
    equity_problems = evaluations["equity_matches_trades"]["problems"].value
    assert list(equity_problems) == [second] and "final equity" in equity_problems[second]
    assert evaluations["equity_matches_trades"]["runs_checked"].value == 3
    assert not result.asset_materializations_for_node("strategy_leaderboard")
    # Only the first, successful run materialised the leaderboard.
    latest = instance.get_latest_materialization_event(AssetKey("strategy_leaderboard"))
    assert latest is not None and latest.run_id == done.run_id


def test_leaderboard_reranks_after_backtests_once_their_checks_pass(
    settings: Settings,
    defs: Definitions,
    instance_with_symbols: DagsterInstance,
    store: CandleStore,
    results: ResultsStore,
) -> None:
    """strategy_leaderboard's condition evaluated for real: after any backtest partition changes,
    even while other partitions (ETHUSDT here) have no result yet; not while the stored results
    fail their blocking checks."""
    instance = instance_with_symbols
    _ingest_window(store, settings, ["BTCUSDT"])
    _evaluate_param_sets(instance, resources_from_settings(settings), cursor=None)
    resources = resources_from_settings(settings)
    btc = backtest_range_tags(["BTCUSDT"], SLUGS)

    def tick(cursor: Any) -> EvaluateAutomationConditionsResult:
        board = AssetSelection.assets(strategy_leaderboard)
        return evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=board, cursor=cursor
        )

    start = tick(None)
    assert start.total_requested == 0
    backtests = [backtest_runs, backtest_runs_checks]
    assert materialize(backtests, instance=instance, resources=resources, tags=btc).success
    rerank = tick(start.cursor)
    assert rerank.get_requested_partitions(STRATEGY_LEADERBOARD) == {None}
    assert materialize([strategy_leaderboard], instance=instance, resources=resources).success
    ranked = tick(rerank.cursor)
    assert ranked.total_requested == 0

    # New results whose stored copy then fails the checks: no ranking until they pass again.
    assert materialize([backtest_runs], instance=instance, resources=resources, tags=btc).success
    with results.engine.begin() as conn:
        conn.execute(text("UPDATE equity_curves SET equity = equity + 50"))
    recheck = AssetSelection.checks_for_assets(backtest_runs)
    failed = materialize(
        backtests, instance=instance, resources=resources, selection=recheck, raise_on_error=False
    )
    assert not failed.success
    blocked = tick(ranked.cursor)
    assert blocked.total_requested == 0
    assert materialize(backtests, instance=instance, resources=resources, tags=btc).success
    assert tick(blocked.cursor).get_requested_partitions(STRATEGY_LEADERBOARD) == {None}


def _the_one_failure(result: ExecuteInProcessResult) -> str:
    """The error of a run that failed once in backtest_runs and was not retried."""
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "backtest_runs"
    return str(failure.step_failure_data.error)


def test_missing_candles_fail_at_once_without_retries(
    settings: Settings, instance_with_symbols: DagsterInstance
) -> None:
    """No candles in the window is the operator's to fix: retrying would not ingest them."""
    instance = instance_with_symbols
    _evaluate_param_sets(instance, resources_from_settings(settings), cursor=None)
    result = _materialize(
        settings,
        instance,
        partition_key=backtest_partition_key("ETHUSDT", SLUGS[0]),
        raise_on_error=False,
    )
    assert "cryptota ingest" in _the_one_failure(result)  # the core's one-line hint


def test_a_window_the_store_covers_only_in_part_fails_naming_the_covered_range(
    settings: Settings, instance_with_symbols: DagsterInstance
) -> None:
    """Three of the window's seven days ingested: no silent three-day backtest, and no retry."""
    instance = instance_with_symbols
    window = backtest_window(settings.backtest_interval, settings.backtest_days)
    store = CandleStore.from_url(settings.resolved_database_url)
    try:
        start = window.end - pd.Timedelta(days=3)
        ingest_series(store, SyntheticSource(seed=42), "ETHUSDT", "1m", start, window.end)
    finally:
        store.engine.dispose()
    _evaluate_param_sets(instance, resources_from_settings(settings), cursor=None)
    result = _materialize(
        settings,
        instance,
        partition_key=backtest_partition_key("ETHUSDT", SLUGS[0]),
        raise_on_error=False,
    )
    error = _the_one_failure(result)
    assert "ETHUSDT 1h (synthetic): the store has 72 of the 168 candles" in error
    assert f"spanning [{start.strftime('%Y-%m-%dT%H:%M')}Z," in error
    assert "cryptota ingest --source synthetic --symbols ETHUSDT" in error


def test_param_set_sensor_acts_once_per_grid_change(
    settings: Settings, instance: DagsterInstance, results: ResultsStore
) -> None:
    resources = resources_from_settings(settings)
    created = _evaluate_param_sets(instance, resources, cursor=None)
    assert isinstance(created, SensorResult) and created.cursor
    assert [list(r.partition_keys) for r in created.dynamic_partitions_requests or []] == [SLUGS]
    assert results.param_sets()["slug"].tolist() == sorted(SLUGS)  # registered for the asset

    assert isinstance(_evaluate_param_sets(instance, resources, created.cursor), SkipReason)

    wider = {**GRIDS, "rsi": {**GRIDS["rsi"], "period": [7, 14, 21]}}
    changed = _evaluate_param_sets(
        instance,
        {**resources, "backtest_config": BacktestConfigResource(strategy_grids=wider)},
        created.cursor,
    )
    assert isinstance(changed, SensorResult) and changed.cursor != created.cursor
    requests = changed.dynamic_partitions_requests or []
    assert [list(r.partition_keys) for r in requests] == [["rsi-p21-os30-ob70"]]
    assert instance.get_dynamic_partitions("param_sets") == [*SLUGS, "rsi-p21-os30-ob70"]
    assert len(results.param_sets()) == 4


def test_backtest_schedules_ask_for_one_run_over_every_partition(
    defs: Definitions, instance: DagsterInstance
) -> None:
    def tick(schedule: Any, when: datetime) -> Any:
        context = build_schedule_context(
            instance=instance,
            scheduled_execution_time=when,
            repository_def=defs.get_repository_def(),
        )
        return schedule.evaluate_tick(context)

    nightly = datetime(2024, 3, 20, 1, 30, tzinfo=UTC)
    waiting = tick(nightly_backtest_schedule, nightly)
    assert not waiting.run_requests and "symbol_universe_sensor" in (waiting.skip_message or "")
    instance.add_dynamic_partitions("symbols", SYMBOLS)
    waiting = tick(nightly_backtest_schedule, nightly)
    assert not waiting.run_requests and "param_set_sensor" in (waiting.skip_message or "")
    instance.add_dynamic_partitions("param_sets", SLUGS)

    everything = backtest_range_tags(SYMBOLS, SLUGS)
    (request,) = tick(nightly_backtest_schedule, nightly).run_requests
    assert request.job_name in (None, "backtest_job")
    assert {k: request.tags[k] for k in everything} == everything
    assert request.tags["cryptota/trigger"] == "nightly"
    assert nightly_backtest_schedule.cron_schedule == "30 1 * * *"


def test_results_retention_purges_only_runs_created_before_the_cutoff(
    settings: Settings,
    defs: Definitions,
    instance: DagsterInstance,
    store: CandleStore,
    results: ResultsStore,
) -> None:
    def tick(retention_days: int | None) -> Any:
        resource = ResultsStoreResource(
            database_url=settings.resolved_database_url, retention_days=retention_days
        )
        with build_schedule_context(
            instance=instance, resources={"results_store": resource}
        ) as context:
            return results_retention_schedule.evaluate_tick(context)

    off = tick(None)
    assert not off.run_requests and "CRYPTOTA_RESULTS_RETENTION_DAYS" in (off.skip_message or "")
    run_config = {"ops": {"purge_old_backtest_runs": {"config": {"keep_days": 30}}}}
    assert [r.run_config for r in tick(30).run_requests] == [run_config]

    _ingest_window(store, settings, ["BTCUSDT"])
    window = backtest_window(settings.backtest_interval, settings.backtest_days)
    old, recent = (
        run_and_store(store, results, symbol="BTCUSDT", param_set=p, window=window).run_key
        for p in expand_param_grids(GRIDS)[:2]
    )
    with results.engine.begin() as conn:
        conn.execute(
            text("UPDATE backtest_results SET created_at = :t WHERE run_key = :k"),
            {"t": datetime.now(UTC) - timedelta(days=40), "k": old},
        )

    done = defs.get_job_def("results_retention_job").execute_in_process(
        run_config=run_config, instance=instance
    )

    assert done.success
    assert results.count_runs() == 1
    assert results.load_backtest(recent).run_key == recent
