"""``backtest_runs`` and ``strategy_leaderboard``: every parameter set on every symbol, ranked.

``backtest_runs`` is partitioned symbol × parameter set and its backfill policy is single-run: a
run covers a whole key range and hands it to :func:`cryptota_core.backtest.runs.run_many`, which
reads each symbol's candles once and stores one result per partition, so refreshing every
parameter set on every symbol is one run, not one run per partition. Saving is idempotent per
partition (one copy per run key), so a retry or a re-run leaves exactly one stored result per
partition.

Each partition's materialisation records its own run key, headline metrics and candle
fingerprint; all partitions of a run also carry the run's summary (the window, fingerprints per
symbol, a table of the best results), and the best run of the range gets its equity curve drawn
onto its own partition.
"""

import json
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AutomationCondition,
    BackfillPolicy,
    DimensionPartitionMapping,
    FreshnessPolicy,
    IdentityPartitionMapping,
    MaterializeResult,
    MetadataValue,
    MultiPartitionMapping,
    asset,
)

from cryptota_core.app.backtests import StoredRun, run_many
from cryptota_core.backtest.plot import backtest_png, backtest_preview_png
from cryptota_core.backtest.result import HEADLINE_METRICS
from cryptota_core.backtest.runs import BacktestWindow
from cryptota_core.charts import ChartSubject, source_name
from cryptota_core.display import metadata_key, metadata_number
from cryptota_core.numbers import finite_or_none
from cryptota_core.storage.results_store import best_per_symbol
from cryptota_pipelines.failures import (
    NOT_RETRYABLE_ON_STORED_DATA,
    STORED_DATA_RETRY,
    fail_fast_on_bad_input,
)
from cryptota_pipelines.keys import CANDLES_1M
from cryptota_pipelines.metadata import figures_table, png_markdown
from cryptota_pipelines.partitions import (
    BACKTEST_PARTITIONS,
    SYMBOL_DIMENSION,
    BacktestKey,
    backtest_keys,
)
from cryptota_pipelines.resources import (
    BacktestCacheResource,
    BacktestConfigResource,
    CandleStoreResource,
    ResultsStoreResource,
)

CANDLES_OF_THE_SYMBOL = MultiPartitionMapping(
    {
        SYMBOL_DIMENSION: DimensionPartitionMapping(
            dimension_name=SYMBOL_DIMENSION, partition_mapping=IdentityPartitionMapping()
        )
    }
)
"""A backtest of a symbol reads that symbol's candles: same ``symbol``, every ``date`` (the window
moves every day, so no fixed set of days stands for it), for every parameter set."""

SUMMARY_ROWS = 25
"""The run summary's table shows the best this many runs; every run's numbers are on its own
partition, so metadata grows linearly with the partitions of a run, not quadratically."""

LEADERBOARD_METRIC = "sharpe_ratio"
LEADERBOARD_TOP = 10
"""``strategy_leaderboard`` ranks by Sharpe ratio and keeps the best 10 per symbol and strategy."""

_LEADERBOARD_SHOWN = [
    "slug",
    "sharpe_ratio",
    "total_return",
    "max_drawdown",
    "trade_count",
    "note",
]
"""The columns of a symbol's table that fit the UI's page: what a row is and how it did, best
first per strategy (the slug starts with the strategy). Its rank, window, engine, win rate and final
equity are in ``leaderboard_rows`` (every column, as JSON)."""


@asset(
    deps=[AssetDep(CANDLES_1M, partition_mapping=CANDLES_OF_THE_SYMBOL)],
    partitions_def=BACKTEST_PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=STORED_DATA_RETRY,
    group_name="backtests",
    kinds={"python"},  # + where it writes, from the settings (definitions.py)
    code_version="1",
    description="One parameter set backtested on one symbol over the configured window "
    "(CRYPTOTA_BACKTEST_DAYS full UTC days at CRYPTOTA_BACKTEST_INTERVAL) with backtrader; "
    "result, trades and equity curve in the results store.",
)
def backtest_runs(
    context: AssetExecutionContext,
    candle_store: CandleStoreResource,
    results_store: ResultsStoreResource,
    backtest_cache: BacktestCacheResource,
    backtest_config: BacktestConfigResource,
) -> MaterializeResult:
    """Backtest every partition the run covers on the current window and store each result."""
    window = backtest_config.window()
    keys = dict(zip(context.partition_keys, backtest_keys(context.partition_keys), strict=True))
    # Missing candles are the operator's to ingest: retrying in a minute would not find them.
    with fail_fast_on_bad_input(NOT_RETRYABLE_ON_STORED_DATA):
        stored = run_many(
            candle_store.store(),
            results_store.store(),
            [(key.symbol, key.param_set) for key in keys.values()],
            window=window,
            cache=backtest_cache.cache(),
            run_id=context.run.run_id,
        )
        runs = dict(zip(keys, stored, strict=True))
    best = max(runs, key=lambda partition: _rank_value(runs[partition]))
    summary = run_summary(keys, runs, best, window)
    # One call per partition, its own entries first: the UI lists metadata in the order it was
    # added, and a MaterializeResult's metadata would come before every partition's preview.
    for partition, run in runs.items():
        plot = {}
        if partition == best:
            plot["equity_curve"] = equity_curve_markdown(keys[partition], run)
        context.add_asset_metadata(
            {**run_metadata(run), **plot, **summary}, partition_key=partition
        )
    return MaterializeResult()


def _rank_value(run: StoredRun) -> float:
    """What "best" means in a run's summary: the Sharpe ratio, undefined ranking last."""
    sharpe = finite_or_none(run.result.metrics.get(LEADERBOARD_METRIC))
    return -math.inf if sharpe is None else sharpe


def run_metadata(run: StoredRun) -> dict[str, Any]:
    """One partition's own materialisation metadata: where its result is and its headline."""
    result = run.result
    return {
        "equity_preview": png_markdown(
            backtest_preview_png(result), f"equity of {result.slug} (blue) and buy and hold (grey)"
        ),
        "run_key": run.run_key,
        "strategy": result.strategy,
        "params": MetadataValue.json(result.params),
        "bars": result.bars,
        "cached": run.cached,
        "candle_fingerprint": run.candles.fingerprint,
        **{
            metadata_key(name): metadata_number(name, value)
            for name, value in {
                **result.headline(),
                # trade_count counts round trips: a run of 0 trades with a return holds one
                "open_trades": result.metrics.get("open_trades"),
                "equity_final": result.equity_final,
            }.items()
        },
    }


def equity_curve_markdown(key: BacktestKey, run: StoredRun) -> MetadataValue:
    """The core's equity/drawdown plot of ``run`` inlined as a PNG, so the UI shows it."""
    png = backtest_png(run.result, subject=ChartSubject.of(run.candles))
    return png_markdown(png, f"equity curve of {key.param_set} on {key.symbol}")


def run_summary(
    keys: Mapping[str, BacktestKey],
    runs: Mapping[str, StoredRun],
    best: str,
    window: BacktestWindow,
) -> dict[str, Any]:
    """What every partition of the run records about the whole run (``best`` is the partition
    with the highest Sharpe ratio)."""
    fingerprints = {keys[p].symbol: run.candles.fingerprint for p, run in runs.items()}
    exchanges = sorted({run.candles.key.exchange for run in runs.values() if run.candles.key})
    metadata: dict[str, Any] = {
        "runs": len(runs),
        "cached_runs": sum(run.cached for run in runs.values()),
        "best_run": str(keys[best]),
        "best_sharpe_ratio": metadata_number(
            LEADERBOARD_METRIC, runs[best].result.metrics.get(LEADERBOARD_METRIC)
        ),
        "window": f"{window.start.isoformat()} .. {window.end.isoformat()}",
        "interval": window.interval,
        "fingerprints": ", ".join(f"{symbol}:{fp}" for symbol, fp in fingerprints.items()),
        "exchange": ", ".join(exchanges),
        "headline_metrics": figures_table(headline_frame(keys, runs)),
    }
    if len(runs) > SUMMARY_ROWS:
        metadata["headline_shown"] = f"best {SUMMARY_ROWS} of {len(runs)} runs by Sharpe ratio"
    if "synthetic" in exchanges:
        metadata["data_warning"] = "SYNTHETIC: backtested on simulated candles, not Binance data"
    return metadata


def headline_frame(keys: Mapping[str, BacktestKey], runs: Mapping[str, StoredRun]) -> pd.DataFrame:
    """The best :data:`SUMMARY_ROWS` runs by Sharpe ratio with their headline metrics."""
    ordered = sorted(runs, key=lambda partition: _rank_value(runs[partition]), reverse=True)
    rows = [
        {
            "symbol": keys[p].symbol,
            "param_set": keys[p].param_set,
            **runs[p].result.headline(),
            "cached": runs[p].cached,
        }
        for p in ordered[:SUMMARY_ROWS]
    ]
    return pd.DataFrame(rows, columns=["symbol", "param_set", *HEADLINE_METRICS, "cached"])


AFTER_BACKTESTS = (
    AutomationCondition.eager().without(~AutomationCondition.any_deps_missing())
    & AutomationCondition.all_deps_blocking_checks_passed()
).with_label("after backtest_runs changes and its blocking checks pass")
"""Re-rank whenever any backtest partition was (re)materialised — a re-optimisation of one
symbol, a backfill, a run by hand — once none is in progress and the stored results passed their
blocking checks. Unlike ``eager()`` it does not wait for every partition to exist: a new symbol
or parameter set without results yet is simply not ranked until it has some."""

LEADERBOARD_FRESH_BY = FreshnessPolicy.cron(
    deadline_cron="0 3 * * *", lower_bound_delta=timedelta(hours=1, minutes=30), timezone="UTC"
)
"""Re-ranked by 03:00 UTC on the window ending today: materialised since the 01:30 UTC nightly
backtest refresh (nightly_backtest_schedule), which ranks at its end."""


@asset(
    deps=[backtest_runs],
    group_name="backtests",
    automation_condition=AFTER_BACKTESTS,
    freshness_policy=LEADERBOARD_FRESH_BY,
    kinds={"python"},  # + where it writes, from the settings (definitions.py)
    code_version="1",
    description=f"The best {LEADERBOARD_TOP} stored backtest runs per symbol and strategy by "
    "Sharpe ratio (undefined ranks last).",
)
def strategy_leaderboard(
    results_store: ResultsStoreResource,
    backtest_config: BacktestConfigResource,
) -> MaterializeResult:
    """Rank the stored runs with the results store's leaderboard and show it."""
    board = results_store.store().leaderboard(
        metric=LEADERBOARD_METRIC,
        top=LEADERBOARD_TOP,
        min_trades=backtest_config.leaderboard_min_trades,
    )
    return MaterializeResult(metadata=leaderboard_metadata(board))


def leaderboard_metadata(board: pd.DataFrame) -> dict[str, Any]:
    """The ranking as one sortable table per symbol of chosen columns (every column of every
    row in ``leaderboard_rows``), the windows it ranks, its size and each symbol's best
    parameter set."""
    min_trades = int(board.attrs.get("min_trades", 0))
    metadata: dict[str, Any] = {
        **{
            f"{symbol}/leaderboard": figures_table(rows[_LEADERBOARD_SHOWN])
            for symbol, rows in board.groupby("symbol", sort=True)
        },
        "windows": MetadataValue.md(windows_markdown(board)),
        "metric": LEADERBOARD_METRIC,
        "min_trades": MetadataValue.text(
            f"runs with fewer than {min_trades} trades rank after the others and say so in "
            "`note` (CRYPTOTA_LEADERBOARD_MIN_TRADES)"
        ),
        "top_param_set": best_per_symbol(board),
        "dagster/row_count": len(board),
        "rows": len(board),
        "leaderboard_rows": MetadataValue.json(
            json.loads(board.to_json(orient="records", date_format="iso"))
        ),
    }
    if board[LEADERBOARD_METRIC].isna().any():
        metadata["blank_cells"] = MetadataValue.text(
            f"a blank {LEADERBOARD_METRIC} is undefined for that run; `note` says why "
            "(no trades, or returns without dispersion): it ranks last"
        )
    if (board["exchange"] == "synthetic").any():
        metadata["data_warning"] = "SYNTHETIC: ranked on simulated candles, not Binance data"
    if board.empty:
        metadata["hint"] = "No backtest runs stored yet: materialise backtest_runs first."
    return metadata


def windows_markdown(board: pd.DataFrame) -> str:
    """Which candles the ranking is over: one line per series (the latest window of each)."""
    if board.empty:
        return "no runs ranked"
    series = board.drop_duplicates(["exchange", "symbol", "interval"])
    return "\n".join(
        f"- {row.symbol} {row.interval}, "
        f"{source_name(str(row.exchange))} candles: "
        f"{row.window_start:%Y-%m-%d %H:%M} .. {row.window_end:%Y-%m-%d %H:%M} UTC"
        for row in series.itertuples()
    )
