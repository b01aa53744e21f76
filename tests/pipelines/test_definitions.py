"""The code location loads with no environment and no I/O, validates, and keeps DESIGN §4's
names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from dagster import (
    AssetKey,
    BackfillPolicy,
    Backoff,
    DailyPartitionsDefinition,
    Definitions,
    DynamicPartitionsDefinition,
    FreshnessPolicy,
    IdentityPartitionMapping,
    Jitter,
    MultiPartitionMapping,
    MultiPartitionsDefinition,
)

from cryptota_pipelines.resources import MarketSourceResource

PROJECT_ROOT = Path(__file__).resolve().parents[2]

_IMPORT_WITHOUT_IO = """
import json, socket, sys

def refuse(self, address):
    raise AssertionError(f"import opened a connection to {address}")

socket.socket.connect = refuse
import cryptota_pipelines.definitions as location  # importing it builds nothing
from dagster import Definitions

assert not isinstance(location.defs, Definitions)
repo = location.defs().get_repository_def()  # what Dagster does when the location loads
print(json.dumps({
    "assets": sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),
    "checks": sorted(k.name for k in repo.asset_graph.asset_check_keys),
    "jobs": sorted(j.name for j in repo.get_all_jobs()),
    "schedules": sorted(s.name for s in repo.schedule_defs),
    "sensors": sorted(s.name for s in repo.sensor_defs),
}))
"""


def _bare_environment(home: Path) -> dict[str, str]:
    """PATH and a fresh HOME; no CRYPTOTA_*, BINANCE_* or DAGSTER_HOME."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def test_definitions_import_without_environment_does_no_io(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_WITHOUT_IO],
        cwd=tmp_path,
        env=_bare_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {
        "assets": [
            "backtest_runs",
            "candle_rollups",
            "candles_1m",
            "parameter_optimization",
            "strategy_leaderboard",
            "trading_signals",
            "walk_forward_report",
        ],
        "checks": [
            "completeness",
            "equity_matches_trades",
            "metrics_finite_or_null",
            "no_duplicates",
            "no_future_candles",
            "ohlc_sanity",
            "volume_non_negative",
        ],
        "jobs": [
            "__ASSET_JOB",
            "adhoc_backtest_job",
            "backtest_job",
            "candle_ingestion_job",
            "candle_retention_job",
            "distributed_backtest_job",
            "optimization_job",
            "results_retention_job",
            "walk_forward_job",
        ],
        "schedules": [
            "candle_retention_schedule",
            "nightly_backtest_schedule",
            "results_retention_schedule",
            "weekly_walk_forward_schedule",
        ],
        "sensors": [
            "default_automation_condition_sensor",
            "param_set_sensor",
            "performance_drift_sensor",
            "reoptimization_sensor",
            "symbol_universe_sensor",
        ],
    }
    # The embedded default store is a SQLite file under ~/.cryptota: not even its directory exists.
    assert not (tmp_path / ".cryptota").exists()


def test_dg_check_defs_validates_the_project(tmp_path: Path) -> None:
    """``dg check defs`` (make defs) finds the project through ``[tool.dg]`` and loads its defs
    folder with no environment; its instance is a throwaway home, not production's
    dagster.yaml."""
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    venv = Path(sys.executable).parent
    done = subprocess.run(
        [str(venv / "dg"), "check", "defs", "--target-path", str(PROJECT_ROOT)],
        cwd=tmp_path,
        env={
            **_bare_environment(tmp_path),
            "DAGSTER_HOME": str(tmp_path),
            "VIRTUAL_ENV": str(venv.parent),
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr


def test_candle_assets_carry_the_orchestration_contract(defs: Definitions) -> None:
    graph = defs.get_repository_def().asset_graph
    candles, rollups = graph.get(AssetKey("candles_1m")), graph.get(AssetKey("candle_rollups"))

    assert candles.group_name == "ingestion" and rollups.group_name == "rollups"
    assert rollups.parent_keys == {AssetKey("candles_1m")}
    for node in (candles, rollups):
        partitions = node.partitions_def
        assert isinstance(partitions, MultiPartitionsDefinition)
        dims = {d.name: d.partitions_def for d in partitions.partitions_defs}
        assert isinstance(dims["symbol"], DynamicPartitionsDefinition)
        assert dims["symbol"].name == "symbols"
        assert isinstance(dims["date"], DailyPartitionsDefinition)
        assert dims["date"].start.date().isoformat() == "2017-08-17"
        assert dims["date"].timezone == "UTC"
        policy = node.backfill_policy
        # Chunked backfill: never one run per partition, never years in a single run.
        assert policy is not None and policy.max_partitions_per_run is not None
        assert 30 <= policy.max_partitions_per_run <= 366

    assets_def = defs.get_assets_def("candles_1m")
    assert assets_def.op.pool == "binance"
    retry = assets_def.op.retry_policy
    assert retry is not None and retry.max_retries == 3
    assert retry.backoff == Backoff.EXPONENTIAL and retry.jitter == Jitter.PLUS_MINUS
    assert candles.code_version is not None
    # Yesterday's candles are expected by 02:00 UTC, since the 00:15 UTC nightly tick.
    assert candles.freshness_policy == FreshnessPolicy.cron(
        deadline_cron="0 2 * * *", lower_bound_delta=timedelta(hours=1, minutes=45)
    )

    candle_checks = [
        spec
        for checks_def in defs.asset_checks or []
        for spec in checks_def.check_specs
        if spec.asset_key == AssetKey("candles_1m")
    ]
    assert len(candle_checks) == 5 and all(spec.blocking for spec in candle_checks)


def test_backtest_assets_carry_the_orchestration_contract(defs: Definitions) -> None:
    graph = defs.get_repository_def().asset_graph
    runs, board = graph.get(AssetKey("backtest_runs")), graph.get(AssetKey("strategy_leaderboard"))

    assert runs.group_name == board.group_name == "backtests"
    assert runs.parent_keys == {AssetKey("candles_1m")}
    assert board.parent_keys == {AssetKey("backtest_runs")} and board.partitions_def is None
    partitions = runs.partitions_def
    assert isinstance(partitions, MultiPartitionsDefinition)
    dims = {d.name: d.partitions_def for d in partitions.partitions_defs}
    assert {name: getattr(d, "name", None) for name, d in dims.items()} == {
        "symbol": "symbols",
        "param_set": "param_sets",
    }
    # A refresh of every symbol × parameter set loops in one run instead of one run per partition.
    assert runs.backfill_policy == BackfillPolicy.single_run()
    # Each backtest depends on its own symbol's candles (every day), whatever its parameter set.
    mapping = graph.get_partition_mapping(AssetKey("backtest_runs"), AssetKey("candles_1m"))
    assert isinstance(mapping, MultiPartitionMapping)
    assert {
        upstream: (m.dimension_name, type(m.partition_mapping))
        for upstream, m in mapping.downstream_mappings_by_upstream_dimension.items()
    } == {"symbol": ("symbol", IdentityPartitionMapping)}
    assets_def = defs.get_assets_def("backtest_runs")
    retry = assets_def.op.retry_policy
    assert retry is not None and retry.backoff == Backoff.EXPONENTIAL
    assert runs.code_version is not None and board.code_version is not None
    # Re-ranked by 03:00 UTC, since the 01:30 UTC nightly refresh.
    assert board.freshness_policy == FreshnessPolicy.cron(
        deadline_cron="0 3 * * *", lower_bound_delta=timedelta(hours=1, minutes=30)
    )

    backtest_checks = [
        spec
        for checks_def in defs.asset_checks or []
        for spec in checks_def.check_specs
        if spec.asset_key == AssetKey("backtest_runs")
    ]
    assert {spec.name for spec in backtest_checks} == {
        "metrics_finite_or_null",
        "equity_matches_trades",
    }
    assert all(spec.blocking for spec in backtest_checks)


def test_auto_source_opens_binance_without_network_or_synthetic_fallback() -> None:
    """Scheduled runs must never swap in simulated candles because Binance was unreachable."""
    assert MarketSourceResource(source_name="auto").source().exchange == "binance"
    assert MarketSourceResource(source_name="synthetic").source().exchange == "synthetic"


def test_kinds_say_where_the_assets_write(defs: Definitions, sqlite_url: str) -> None:
    """PostgreSQL (or TimescaleDB) in production, the SQLite file of the embedded default."""
    from cryptota_core.settings import load_settings
    from cryptota_pipelines.definitions import build_defs

    def kinds(location: Definitions) -> dict[str, set[str]]:
        graph = location.get_repository_def().asset_graph
        return {k.to_user_string(): set(graph.get(k).kinds) for k in graph.get_all_asset_keys()}

    production = kinds(defs)  # CRYPTOTA_DATABASE_URL: the throwaway PostgreSQL
    assert production and all(v == {"python", "postgres"} for v in production.values())
    embedded = kinds(build_defs(load_settings(database_url=sqlite_url)))
    assert embedded and all(v == {"python", "sqlite"} for v in embedded.values())
