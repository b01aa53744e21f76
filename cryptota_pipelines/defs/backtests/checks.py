"""Blocking checks on ``backtest_runs``: what the results store holds for each partition is sane.

They validate what is *stored*: each partition's latest materialisation names its ``run_key``, and
the check reads that run back from the results store (row, trades and equity curve in one
snapshot) before judging it. They are blocking, so ``strategy_leaderboard`` is not materialised in
a run where one fails. To re-check stored results without re-running the backtests, select the
checks and ``strategy_leaderboard`` (not ``backtest_runs``) and launch them: with no partition
that checks every materialised partition, then re-ranks.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    multi_asset_check,
)

from cryptota_core.backtest.result import (
    EQUITY_RTOL,
    BacktestResult,
    equity_problems,
    metric_problems,
)
from cryptota_core.errors import NoDataError
from cryptota_core.storage.results_store import ResultsStore
from cryptota_pipelines.keys import BACKTEST_RUNS
from cryptota_pipelines.resources import ResultsStoreResource

SHOWN_PROBLEMS = 50
"""At most this many failing partitions are listed in a check's metadata."""


_JUDGES: dict[str, tuple[str, Callable[[BacktestResult], list[str]]]] = {
    "metrics_finite_or_null": (
        "Every stored metric is a finite number or null: never NaN, ±inf or a string.",
        metric_problems,
    ),
    "equity_matches_trades": (
        f"cash + Σ trade pnl equals the final equity (relative {EQUITY_RTOL:g}) and the equity "
        "curve has one point per bar.",
        equity_problems,
    ),
}


def latest_run_keys(instance: DagsterInstance, partitions: Sequence[str]) -> dict[str, str | None]:
    """The ``run_key`` each partition's latest materialisation recorded (None: never
    materialised, or by a version that did not record it)."""
    latest = instance.get_latest_storage_id_by_partition(
        BACKTEST_RUNS, DagsterEventType.ASSET_MATERIALIZATION, set(partitions)
    )
    records = (
        instance.fetch_materializations(
            AssetRecordsFilter(BACKTEST_RUNS, storage_ids=list(latest.values())),
            limit=len(latest),
        ).records
        if latest
        else []
    )
    found: dict[str, str | None] = dict.fromkeys(partitions)
    for record in records:
        materialization = record.asset_materialization
        if record.partition_key is not None and materialization is not None:
            run_key = materialization.metadata.get("run_key")
            found[record.partition_key] = None if run_key is None else str(run_key.value)
    return found


def _load(results: ResultsStore, run_key: str | None) -> BacktestResult | None:
    if run_key is None:
        return None
    try:
        return results.load_backtest(run_key).result
    except NoDataError:  # purged by retention, or deleted behind the pipeline's back
        return None


class Verdict(NamedTuple):
    """One check's judgement of a set of stored partitions: what both the asset's checks and
    ``distributed_backtest_job``'s shard steps report."""

    passed: bool
    metadata: dict[str, Any]


CHECK_NAMES = tuple(_JUDGES)
"""The blocking checks of ``backtest_runs``, by name."""


def stored_results(
    results: ResultsStore, run_keys: Mapping[str, str | None]
) -> dict[str, BacktestResult | None]:
    """Each partition's run read back from the store (None: not recorded or no longer there)."""
    return {partition: _load(results, run_key) for partition, run_key in run_keys.items()}


def judge(name: str, stored: Mapping[str, BacktestResult | None]) -> Verdict:
    """Check ``name`` on the stored results: it fails when any partition's stored result has a
    problem or cannot be found."""
    missing = [partition for partition, result in stored.items() if result is None]
    problems = {
        partition: "; ".join(found)
        for partition, result in stored.items()
        if result is not None and (found := _JUDGES[name][1](result))
    }
    return Verdict(
        passed=not problems and not missing,
        metadata={
            "runs_checked": len(stored) - len(missing),
            "failing_runs": len(problems),
            "missing_results": len(missing),
            "problems": dict(list(problems.items())[:SHOWN_PROBLEMS]),
            "missing": missing[:SHOWN_PROBLEMS],
        },
    )


@multi_asset_check(
    specs=[
        AssetCheckSpec(name, asset=BACKTEST_RUNS, blocking=True, description=description)
        for name, (description, _) in _JUDGES.items()
    ],
    can_subset=True,
)
def backtest_runs_checks(
    context: AssetCheckExecutionContext,
    results_store: ResultsStoreResource,
) -> Iterator[AssetCheckResult]:
    """Read each covered partition's stored run back once, then judge every selected check. A
    run without partitions (the checks with ``strategy_leaderboard`` alone) covers every
    materialised partition."""
    results = results_store.store()
    partitions = (
        context.partition_keys
        if context.op_execution_context.has_partitions
        else sorted(context.instance.get_materialized_partitions(BACKTEST_RUNS))
    )
    stored = stored_results(results, latest_run_keys(context.instance, partitions))
    for check_key in context.selected_asset_check_keys:
        verdict = judge(check_key.name, stored)
        yield AssetCheckResult(
            check_name=check_key.name,
            passed=verdict.passed,
            severity=AssetCheckSeverity.ERROR,
            metadata=verdict.metadata,
        )
