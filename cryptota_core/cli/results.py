"""``cryptota results``: the backtest results a Dagster run stored."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.table import Table

from cryptota_core.cli.common import cli, out
from cryptota_core.display import format_metric
from cryptota_core.errors import NoDataError
from cryptota_core.settings import load_settings

if TYPE_CHECKING:
    pass


@cli.command("results")
@click.argument("run_id")
@click.option(
    "--json", "as_json", is_flag=True, help="Print each result as one JSON object (DESIGN §2)."
)
def results_command(run_id: str, as_json: bool) -> None:
    """The backtest results the Dagster run RUN_ID stored: an ad-hoc backtest's one result
    (adhoc_backtest_job), or every partition a pipeline run backtested. With --json, one
    ``cryptota backtest --json`` object per result, one per line."""
    from cryptota_core.storage.results_store import ResultsStore

    settings = load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    stored = ResultsStore.from_url(settings.resolved_database_url).backtests_of_run(run_id)
    if not stored:
        raise NoDataError(
            f"no backtest result stored by Dagster run {run_id!r}: the run may still be queued or "
            "running, may have failed (see its status in the Dagster UI), or later runs of the "
            "same backtest replaced its result"
        )
    if as_json:
        for run in stored:
            print(json.dumps(run.result.to_dict(), allow_nan=False))
        return
    for run in stored:
        result = run.result
        table = Table(
            title=f"{result.slug} on {run.symbol} ({run.exchange}) {result.interval}, "
            f"{result.start:%Y-%m-%d %H:%M} .. {result.end:%Y-%m-%d %H:%M} UTC, "
            f"{result.bars:,} candles, {result.engine} (run key {run.run_key})"
        )
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name, value in {**result.headline(), "equity_final": result.equity_final}.items():
            table.add_row(name, format_metric(name, value))
        out.print(table)
