"""The research assets: ``parameter_optimization``, ``walk_forward_report`` and
``trading_signals``, one partition per symbol.

Each body is one call into :mod:`cryptota_core.app.research` (which reads the symbol's candles
once, runs every configured strategy and stores the results with the run id), then metadata for
the UI: sortable tables (``MetadataValue.table``) and the objective heatmap / out-of-sample
equity as pictures.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    MultiToSingleDimensionPartitionMapping,
    asset,
)

from cryptota_core.app.research import (
    StoredOptimization,
    StoredWalkForward,
    SymbolOptimization,
    optimize_symbol,
    signal_symbol,
    walk_forward_symbol,
)
from cryptota_core.charts import ChartSubject, figure_png
from cryptota_core.display import metadata_key, metadata_number
from cryptota_core.numbers import finite_or_none
from cryptota_core.research.plots import (
    has_heatmap,
    heatmap_figure,
    objective_preview_png,
    walk_forward_figure,
    walk_forward_preview_png,
)
from cryptota_pipelines.failures import (
    NOT_RETRYABLE_ON_STORED_DATA,
    STORED_DATA_RETRY,
    fail_fast_on_bad_input,
)
from cryptota_pipelines.keys import CANDLES_1M, PARAMETER_OPTIMIZATION
from cryptota_pipelines.metadata import figures_table, frame_table, png_markdown
from cryptota_pipelines.partitions import SYMBOL_DIMENSION, symbol_partitions
from cryptota_pipelines.resources import (
    CandleStoreResource,
    ResearchConfigResource,
    ResearchStoreResource,
)

CANDLES_OF_THE_SYMBOL = MultiToSingleDimensionPartitionMapping(
    partition_dimension_name=SYMBOL_DIMENSION
)
"""A symbol's research reads that symbol's candles, every day of its window."""

PER_SYMBOL: dict[str, Any] = {
    "deps": [AssetDep(CANDLES_1M, partition_mapping=CANDLES_OF_THE_SYMBOL)],
    "partitions_def": symbol_partitions,
    "retry_policy": STORED_DATA_RETRY,
    "group_name": "research",
    "kinds": {"python"},
    "code_version": "1",
}
"""What every research asset is: one partition per symbol, reading that symbol's candles."""

_TOP_SHOWN = [
    "strategy",
    "rank",
    "slug",
    "score",
    "total_return",
    "max_drawdown",
    "trade_count",
    "re-check",
]
"""The top-sets columns that fit the UI's page; every figure of each set is in ``top_sets_rows``."""


Step = TypeVar("Step")


def for_symbol(
    step: Callable[..., Step],
    symbol: str,
    run_id: str,
    candle_store: CandleStoreResource,
    research_store: ResearchStoreResource,
    research_config: ResearchConfigResource,
) -> Step:
    """One research step of :mod:`cryptota_core.app.research` on ``symbol``, stored with the
    run id; bad input or missing candles fail at once, without retries. The assets and the
    distributed job's steps all run through here."""
    with fail_fast_on_bad_input(NOT_RETRYABLE_ON_STORED_DATA):
        return step(
            candle_store.store(),
            research_store.store(),
            symbol,
            research_config.config(),
            run_id=run_id,
        )


def _partition(context: AssetExecutionContext) -> tuple[str, str]:
    """The symbol an asset step works on, and its run id."""
    return context.partition_key, context.run.run_id


@asset(
    **PER_SYMBOL,
    description="Grid search of every strategy of CRYPTOTA_OPTIMIZATION_GRIDS on the symbol's "
    "last CRYPTOTA_OPTIMIZATION_DAYS days: one sweep ranks every set, the winner re-run set by "
    "set (CRYPTOTA_OPTIMIZATION_RECHECK_ENGINE); deflated Sharpe ratio and PBO of the winner; "
    "stored in optimization_runs. A strategy with no set making the minimum of trades is "
    "skipped with the reason.",
)
def parameter_optimization(
    context: AssetExecutionContext,
    candle_store: CandleStoreResource,
    research_store: ResearchStoreResource,
    research_config: ResearchConfigResource,
) -> MaterializeResult:
    """Optimise every configured strategy on this symbol and store each search."""
    stored = for_symbol(
        optimize_symbol, *_partition(context), candle_store, research_store, research_config
    )
    return MaterializeResult(metadata=optimization_metadata(stored))


def optimization_metadata(optimized: SymbolOptimization) -> dict[str, Any]:
    """Per strategy the winner, its DSR and the search's PBO, and its objective heatmap (a
    preview inline, the full picture one click away) when it searched two or more parameters;
    the top sets of every strategy as one sortable table (every figure as JSON); why a
    strategy was skipped."""
    stored = optimized.stored
    rows = []
    full_rows = []
    pictures: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for item in stored:
        result = item.result
        checks = {c.slug: ("reproduced" if c.reproduced else "DIFFERS") for c in result.rechecks}
        for record in result.top.to_dict(orient="records"):
            rows.append(
                {
                    "strategy": result.strategy,
                    "rank": int(record["rank"]),
                    "slug": record["slug"],
                    "score": finite_or_none(record[result.objective]),
                    "total_return": finite_or_none(record["total_return"]),
                    "max_drawdown": finite_or_none(record["max_drawdown"]),
                    "trade_count": finite_or_none(record["trade_count"]),
                    "re-check": checks.get(str(record["slug"]), "-"),
                }
            )
        full_rows.append({"strategy": result.strategy, "top": result.to_dict()["top"]})
        if has_heatmap(result):
            pictures.update(heatmap_metadata(item))
        stats = result.statistics
        summary[f"{result.strategy}/best"] = result.best_slug
        summary[f"{result.strategy}/score"] = metadata_number("score", result.best_score)
        summary[f"{result.strategy}/dsr"] = metadata_number("dsr", stats["dsr"])
        summary[f"{result.strategy}/pbo"] = metadata_number("pbo", stats["pbo"])
        summary[f"{result.strategy}/pbo_flat_as_zero"] = metadata_number(
            "pbo", stats.get("pbo_flat_as_zero")
        )
        summary[f"{result.strategy}/sets"] = MetadataValue.text(
            f"{stats.get('eligible_sets', result.combinations):,} of {result.combinations:,} "
            f"searched had at least {stats.get('min_trades', 0)} trades and competed"
        )
        summary[f"{result.strategy}/periods"] = MetadataValue.text(
            f"PSR/DSR/PBO over {stats.get('effective_observations')} "
            f"{stats.get('significance_period')} returns"
        )
        summary[f"{result.strategy}/run_key"] = item.run_key
    best = max(
        stored,
        key=lambda s: s.result.best_score if s.result.best_score is not None else float("-inf"),
    )
    metadata: dict[str, Any] = {
        **pictures,
        **summary,
        "objective": best.result.objective,
        "window": f"{best.result.sweep.candle_start} .. {best.result.sweep.candle_end}",
        "candle_fingerprint": best.candles.fingerprint,
        "combinations": sum(s.result.combinations for s in stored),
        "top_sets": figures_table(pd.DataFrame(rows, columns=_TOP_SHOWN)),
        "top_sets_rows": MetadataValue.json(full_rows),
        "dagster/row_count": len(rows),
    }
    for strategy, reason in optimized.skipped.items():
        metadata[f"{strategy}/skipped"] = MetadataValue.text(reason)
    if best.candles.key is not None and best.candles.key.exchange == "synthetic":
        metadata["data_warning"] = "SYNTHETIC: optimised on simulated candles, not Binance data"
    return metadata


def heatmap_metadata(item: StoredOptimization) -> dict[str, MetadataValue]:
    """One strategy's objective heatmap: the preview and the full picture."""
    result = item.result
    subject = ChartSubject.of(item.candles)
    figure = heatmap_figure(result, subject=subject)
    return {
        f"{result.strategy}/heatmap_preview": png_markdown(
            objective_preview_png(result), f"{result.objective} of {result.strategy} (preview)"
        ),
        f"{result.strategy}/objective_heatmap": png_markdown(
            figure_png(figure), f"{result.objective} of {result.strategy}"
        ),
    }


@asset(
    **PER_SYMBOL,
    description="Walk-forward of every configured strategy over the symbol's last "
    "CRYPTOTA_WALK_FORWARD_DAYS days: optimise in sample, trade the winner out of sample, roll; "
    "stitched out-of-sample equity, efficiency, parameter stability; in walk_forward_windows.",
)
def walk_forward_report(
    context: AssetExecutionContext,
    candle_store: CandleStoreResource,
    research_store: ResearchStoreResource,
    research_config: ResearchConfigResource,
) -> MaterializeResult:
    """Walk every configured strategy forward on this symbol and store the windows."""
    stored = for_symbol(
        walk_forward_symbol, *_partition(context), candle_store, research_store, research_config
    )
    return MaterializeResult(metadata=walk_forward_metadata(stored))


WALK_FORWARD_SHOWN = {
    "oos_total_return": "oos_total_return",
    "walk_forward_efficiency": "walk_forward_efficiency",
    "walk_forward_efficiency_window_count": "wfe_windows",
    "profitable_windows": "profitable_windows",
}
"""The statistics a strategy's walk-forward shows, under the key the UI's narrow key column
fits (``rsi_ma/walk_forward_efficiency_window_count`` ran under the timestamp)."""


def walk_forward_metadata(stored: list[StoredWalkForward]) -> dict[str, Any]:
    """Every window of every strategy as one sortable table (every field as JSON), the
    headline statistics per strategy, and the stitched out-of-sample equity of the best one
    beside buy and hold (a preview inline, the full picture one click away)."""
    frames = []
    summary: dict[str, Any] = {}
    for item in stored:
        result = item.result
        frames.append(windows_shown(item))
        stats = result.statistics
        for name, label in WALK_FORWARD_SHOWN.items():
            summary[metadata_key(f"{result.strategy}/{label}")] = metadata_number(name, stats[name])
        summary[f"{result.strategy}/modal_slug"] = stats["modal_slug"]
        summary[f"{result.strategy}/run_key"] = item.run_key
    best = max(stored, key=lambda s: s.result.statistics["oos_total_return"] or float("-inf"))
    close = best.candles.frame["close"]
    figure = walk_forward_figure(best.result, subject=ChartSubject.of(best.candles), close=close)
    windows = pd.concat(frames, ignore_index=True)
    metadata: dict[str, Any] = {
        "equity_preview": png_markdown(
            walk_forward_preview_png(best.result, close),
            f"out-of-sample equity of {best.result.strategy} (blue) and buy and hold (grey)",
        ),
        **summary,
        "windows": figures_table(windows),
        "windows_rows": MetadataValue.json(
            [{"strategy": s.result.strategy, **s.result.to_dict()} for s in stored]
        ),
        "dagster/row_count": len(windows),
        "out_of_sample_equity": png_markdown(
            figure_png(figure), f"out-of-sample equity of {best.result.strategy}"
        ),
        "candle_fingerprint": best.candles.fingerprint,
    }
    if best.candles.key is not None and best.candles.key.exchange == "synthetic":
        metadata["data_warning"] = (
            "SYNTHETIC: walked forward on simulated candles, not Binance data"
        )
    return metadata


def windows_shown(item: StoredWalkForward) -> pd.DataFrame:
    """The columns of a strategy's windows that fit the UI's page: which window, when it
    traded (month-day hour, UTC), what was chosen in sample and how it did out of sample."""
    result = item.result
    return pd.DataFrame(
        [
            {
                "strategy": result.strategy,
                "window": w.window_no,
                "out_of_sample": f"{w.out_sample_start:%m-%d %H:%M}.."
                f"{w.out_sample_end:%m-%d %H:%M}",
                "chosen": w.best_slug.removeprefix(f"{result.strategy}-"),
                "in_sample_score": w.in_sample_score,
                "out_sample_score": w.out_sample_score,
                "out_sample_return": w.out_sample_return,
            }
            for w in result.windows
        ],
        columns=[
            "strategy",
            "window",
            "out_of_sample",
            "chosen",
            "in_sample_score",
            "out_sample_score",
            "out_sample_return",
        ],
    )


@asset(
    **{**PER_SYMBOL, "deps": [*PER_SYMBOL["deps"], AssetDep(PARAMETER_OPTIMIZATION)]},
    automation_condition=AutomationCondition.eager(),
    description="The latest signal of each strategy's current best parameters on the symbol "
    "(the orders it placed after the last closed candle) as paper_orders, once per candle.",
)
def trading_signals(
    context: AssetExecutionContext,
    candle_store: CandleStoreResource,
    research_store: ResearchStoreResource,
    research_config: ResearchConfigResource,
) -> MaterializeResult:
    """Evaluate the current best parameters on the newest candles and place paper orders."""
    orders, placed = for_symbol(
        signal_symbol, *_partition(context), candle_store, research_store, research_config
    )
    table = pd.DataFrame(
        [
            {
                "strategy": o.strategy,
                "slug": o.slug,
                "signal_time": o.signal_time,
                "side": o.side,
                "order_type": o.order_type,
                "price": o.price,
                "size": o.size,
            }
            for o in orders
        ],
        columns=["strategy", "slug", "signal_time", "side", "order_type", "price", "size"],
    )
    return MaterializeResult(
        metadata={
            "signals": len(orders),
            "new_paper_orders": placed,
            "orders": frame_table(table),
            "summary": MetadataValue.text(
                ", ".join(f"{o.strategy}: {o.side} {o.order_type}" for o in orders)
                or "no signal on the last candle"
            ),
        }
    )
