"""``distributed_backtest_job``: the ``backtest_runs`` partitions of one run as many steps, and each
symbol's ``parameter_optimization``, run by Celery workers.

Executors distribute *steps*, and Dagster runs one partitioned asset in one run as one step:
``backtest_runs`` (single-run backfill policy) refreshes every symbol × parameter set in a single
step on a single machine. This job is the scale-out path for the same work. Its first step,
``plan_steps``, fixes the partitions and the window once and cuts them into shards of
one symbol and at most ``partitions_per_step`` parameter sets (one candle read per shard);
``backtest_shard`` is mapped over the shards, one step each, and the Celery executor hands each
step to whichever worker is free: N workers run N shards at once. (A backfill of
``backtest_runs`` launched from the UI stays one run, one step, on ``backtest_job``'s executor.)

A shard step calls what the asset calls (:func:`~cryptota_core.backtest.runs.run_many`: the same
engine, the same saves keyed by partition, the run id recorded) and records one
``AssetMaterialization`` of ``backtest_runs`` per partition with the asset's own partition
metadata, so the asset's partition status, its lineage and the leaderboard's automation condition
see these results as they see the asset's; each materialisation's description names the job, step
and run that computed it. The step then judges what it stored with the asset's blocking checks
(``metrics_finite_or_null``, ``equity_matches_trades``: the same function, on the same read-back)
and reports each as an ``AssetCheckEvaluation`` of ``backtest_runs``; a failed one fails the step.

The same run also optimises each symbol (``parameter_optimization``, one step per symbol, the
asset's own core call and metadata) unless its config says ``optimize: false``: a sweep of a
thousand parameter sets is exactly the work worth spreading. Another per-symbol step joins the
same way, by mapping one more op over the planner's ``symbols`` output.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetMaterialization,
    Config,
    DynamicOut,
    DynamicOutput,
    Failure,
    OpExecutionContext,
    job,
    op,
)
from pydantic import BaseModel, Field

from cryptota_core.app.backtests import run_many
from cryptota_core.app.research import optimize_symbol
from cryptota_core.backtest.runs import BacktestWindow
from cryptota_core.errors import InvalidInputError
from cryptota_pipelines.defs.backtests.assets import run_metadata
from cryptota_pipelines.defs.backtests.checks import CHECK_NAMES, judge, stored_results
from cryptota_pipelines.defs.research.assets import for_symbol, optimization_metadata
from cryptota_pipelines.executors import cryptota_celery_executor
from cryptota_pipelines.failures import (
    NOT_RETRYABLE_ON_STORED_DATA,
    STORED_DATA_RETRY,
    fail_fast_on_bad_input,
)
from cryptota_pipelines.keys import BACKTEST_RUNS, PARAMETER_OPTIMIZATION
from cryptota_pipelines.partitions import (
    PARAM_SETS_PARTITIONS,
    SYMBOLS_PARTITIONS,
    backtest_partition_key,
)
from cryptota_pipelines.resources import (
    BacktestCacheResource,
    BacktestConfigResource,
    CandleStoreResource,
    ResearchConfigResource,
    ResearchStoreResource,
    ResultsStoreResource,
)

DEFAULT_PARTITIONS_PER_STEP = 8
"""A step backtests at most this many parameter sets of one symbol: a few seconds of work on the
fast engine, long enough that a step's start-up is a small part of it, short enough that a
refresh of the default grid on two symbols is several steps."""


class DistributedSelection(Config):
    """Which ``backtest_runs`` partitions the run covers, how finely they are cut, and whether
    the run also optimises each of its symbols."""

    symbols: list[str] | None = Field(
        default=None, description="Symbols to backtest; default: every `symbols` partition."
    )
    param_sets: list[str] | None = Field(
        default=None,
        description="Parameter-set slugs to backtest; default: every `param_sets` partition.",
    )
    partitions_per_step: int = Field(
        default=DEFAULT_PARTITIONS_PER_STEP,
        description="At most this many parameter sets (of one symbol) per step: smaller means "
        "more, shorter steps spread over more workers.",
    )
    optimize: bool = Field(
        default=True,
        description="Also materialise parameter_optimization for each symbol (one step each).",
    )


class BacktestShard(BaseModel):
    """One step's share of a run: parameter sets of one symbol on the run's window. Passed
    between steps as JSON."""

    symbol: str
    param_sets: list[str]
    interval: str
    start: str
    end: str

    def window(self) -> BacktestWindow:
        return BacktestWindow(self.interval, pd.Timestamp(self.start), pd.Timestamp(self.end))


def choose(requested: Sequence[str] | None, registered: Sequence[str], what: str) -> list[str]:
    """``requested`` (all of ``registered`` when None), each of which must be registered."""
    if not registered:
        sensor = "symbol_universe_sensor" if what == SYMBOLS_PARTITIONS else "param_set_sensor"
        raise InvalidInputError(f"no {what} partitions yet: turn on {sensor} first")
    if requested is None:
        return list(registered)
    unknown = [name for name in requested if name not in registered]
    if unknown or not requested:
        shown = repr(unknown[0]) if unknown else "an empty list"
        raise InvalidInputError(
            f"{what}: {shown} is not a {what} partition; use some of {', '.join(registered)}"
        )
    return list(dict.fromkeys(requested))


def shard(
    symbols: Sequence[str], param_sets: Sequence[str], per_step: int
) -> list[tuple[str, list[str]]]:
    """Cut symbols × parameter sets into (symbol, up to ``per_step`` parameter sets) shards."""
    if per_step < 1:
        raise InvalidInputError(
            f"partitions_per_step: {per_step} is not a positive number; use e.g. 8"
        )
    return [
        (symbol, list(param_sets[i : i + per_step]))
        for symbol in symbols
        for i in range(0, len(param_sets), per_step)
    ]


@op(
    out={
        "shards": DynamicOut(dict, io_manager_key="json_io_manager"),
        "symbols": DynamicOut(str, io_manager_key="json_io_manager", is_required=False),
    },
    description="Fix the run's backtest_runs partitions and window, cut them into shards of one "
    "symbol each, and list the symbols to optimise.",
)
def plan_steps(
    context: OpExecutionContext,
    config: DistributedSelection,
    backtest_config: BacktestConfigResource,
) -> Iterator[DynamicOutput[Any]]:
    """One ``shards`` output per shard, keyed ``<symbol>_<n>``, and one ``symbols`` output per
    symbol (with ``optimize``). The backtest window is taken here, once, so every backtest step
    of the run reads the same candles even when the run crosses midnight UTC."""
    instance = context.instance
    with fail_fast_on_bad_input():
        symbols = choose(
            config.symbols, instance.get_dynamic_partitions(SYMBOLS_PARTITIONS), SYMBOLS_PARTITIONS
        )
        slugs = choose(
            config.param_sets,
            instance.get_dynamic_partitions(PARAM_SETS_PARTITIONS),
            PARAM_SETS_PARTITIONS,
        )
        shards = shard(symbols, slugs, config.partitions_per_step)
    window = backtest_config.window()
    numbers: dict[str, int] = {}
    for symbol, param_sets in shards:
        numbers[symbol] = numbers.get(symbol, -1) + 1
        todo = BacktestShard(
            symbol=symbol,
            param_sets=param_sets,
            interval=window.interval,
            start=window.start.isoformat(),
            end=window.end.isoformat(),
        )
        yield DynamicOutput(
            todo.model_dump(), mapping_key=f"{symbol}_{numbers[symbol]}", output_name="shards"
        )
    if config.optimize:
        for symbol in symbols:
            yield DynamicOutput(symbol, mapping_key=symbol, output_name="symbols")
    context.log.info(
        f"{len(symbols) * len(slugs)} partitions in {len(shards)} steps, window "
        f"{window.start.isoformat()} .. {window.end.isoformat()} at {window.interval}"
    )


@op(
    retry_policy=STORED_DATA_RETRY,
    description="Backtest one shard's parameter sets on its symbol, store each result and record "
    "each as a backtest_runs partition.",
)
def backtest_shard(
    context: OpExecutionContext,
    shard: dict[str, Any],
    candle_store: CandleStoreResource,
    results_store: ResultsStoreResource,
    backtest_cache: BacktestCacheResource,
) -> None:
    """``run_many`` on the shard, then one materialisation per partition. A retry, or a run of the
    step again after its worker died, stores each partition again in place: one copy each."""
    todo = BacktestShard.model_validate(shard)
    # Missing candles are the operator's to ingest: retrying in a minute would not find them.
    with fail_fast_on_bad_input(NOT_RETRYABLE_ON_STORED_DATA):
        stored = run_many(
            candle_store.store(),
            results_store.store(),
            [(todo.symbol, slug) for slug in todo.param_sets],
            window=todo.window(),
            cache=backtest_cache.cache(),
            run_id=context.run.run_id,
        )
    step = context.get_step_execution_context().step.key
    computed_by = f"Computed by {context.job_name}, step {step} (run {context.run_id})."
    run_keys: dict[str, str | None] = {}
    for slug, run in zip(todo.param_sets, stored, strict=True):
        partition = backtest_partition_key(todo.symbol, slug)
        run_keys[partition] = run.run_key
        context.log_event(
            AssetMaterialization(
                asset_key=BACKTEST_RUNS,
                partition=partition,
                description=computed_by,
                metadata=run_metadata(run),
            )
        )
    # The asset's blocking checks, judged here on what this step stored: results computed by
    # this job pass the same checks as the asset's own before anything ranks them.
    results = stored_results(results_store.store(), run_keys)
    failed = []
    for name in CHECK_NAMES:
        verdict = judge(name, results)
        context.log_event(
            AssetCheckEvaluation(  # type: ignore[arg-type]
                asset_key=BACKTEST_RUNS,
                check_name=name,
                passed=verdict.passed,
                metadata=verdict.metadata,
                severity=AssetCheckSeverity.ERROR,
                description=computed_by,
                blocking=True,
            )
        )
        if not verdict.passed:
            failed.append(name)
    if failed:
        # Like a failed blocking check of the asset: the step fails; running it again would
        # store the same results, so it is not retried.
        raise Failure(
            f"backtest_runs check(s) {', '.join(failed)} failed on {todo.symbol} "
            f"({', '.join(todo.param_sets)}); see the check's metadata",
            allow_retries=False,
        )


@op(
    retry_policy=STORED_DATA_RETRY,
    description="parameter_optimization of one symbol: every strategy of "
    "CRYPTOTA_OPTIMIZATION_GRIDS searched on its window, stored and recorded as the partition.",
)
def optimize_symbol_step(
    context: OpExecutionContext,
    symbol: str,
    candle_store: CandleStoreResource,
    research_store: ResearchStoreResource,
    research_config: ResearchConfigResource,
) -> None:
    """What the asset does for its partition (``optimize_symbol``), recorded as a
    materialisation of that partition with the asset's metadata."""
    stored = for_symbol(
        optimize_symbol, symbol, context.run.run_id, candle_store, research_store, research_config
    )
    context.log_event(
        AssetMaterialization(
            asset_key=PARAMETER_OPTIMIZATION,
            partition=symbol,
            metadata=optimization_metadata(stored),
        )
    )


@job(
    executor_def=cryptota_celery_executor,
    description="backtest_runs partitions (default: all of them) as one step per symbol and "
    "batch of parameter sets, and parameter_optimization as one step per symbol, executed by "
    "Celery workers (CRYPTOTA_CELERY_BROKER_URL; start workers with `dagster-celery worker start "
    "-A dagster_celery.app -y celery.yaml`).",
)
def distributed_backtest_job() -> None:
    shards, symbols = plan_steps()
    shards.map(backtest_shard)
    symbols.map(optimize_symbol_step)
