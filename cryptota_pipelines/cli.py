"""The ``cryptota`` console script: the core's commands plus ``demo``, the one command that
runs the Dagster asset graph (the core itself never imports Dagster)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from cryptota_core.cli import cli, console, out
from cryptota_core.cli import main as core_main
from cryptota_core.display import format_metric, format_number
from cryptota_core.settings import load_settings


@cli.command("demo")
@click.option("--days", default=30, show_default=True, type=click.IntRange(2, 366),
              help="How many past UTC days to ingest and backtest.")  # fmt: skip
def demo_command(days: int) -> None:
    """The main job on the embedded default: ingest the last DAYS days of 1m candles for the
    configured symbols, build rollups, backtest every configured parameter set, rank them, and
    optimise every symbol, showing each winner's deflated Sharpe ratio."""
    from cryptota_core.backtest.result import HEADLINE_METRICS
    from cryptota_pipelines.demo import run_demo

    settings = load_settings()
    console.print(f"store: {settings.resolved_database_url}")
    with console.status("starting") as status:
        result = run_demo(
            settings, days=days, on_stage=lambda name: status.update(f"materialising {name}")
        )
    if result.source == "synthetic":
        console.print(
            "[bold yellow]SYNTHETIC DATA[/]: Binance was not reachable (source=auto) or "
            "CRYPTOTA_SOURCE=synthetic; candles are simulated and stored under exchange "
            "'synthetic'"
        )
    console.print(f"{result.runs} Dagster runs in {result.dagster_home}; `make ui` shows them")
    summary = Table(title=f"Stored 1m candles ({result.source})")
    for column in ("symbol", "rows", "expected", "first candle", "last candle", "gaps", "missing"):
        summary.add_column(column, justify="left" if column == "symbol" else "right")
    for symbol, report in result.candles.items():
        summary.add_row(
            symbol,
            f"{report.rows:,}",
            f"{report.expected_rows or 0:,}",
            report.first.isoformat() if report.first is not None else "-",
            report.last.isoformat() if report.last is not None else "-",
            str(len(report.gaps)),
            f"{report.missing_candles:,}",
        )
    out.print(summary)
    board = result.leaderboard
    table = Table(title=f"Strategy leaderboard ({result.source} candles, by Sharpe ratio)")
    for column in ("symbol", "strategy", "rank", "slug"):
        table.add_column(column, justify="right" if column == "rank" else "left",
                         no_wrap=column == "slug")  # fmt: skip
    for name in HEADLINE_METRICS:
        table.add_column(name.replace("_", " "), justify="right")
    table.add_column("note", no_wrap=True)
    for row in board.itertuples(index=False):
        table.add_row(
            str(row.symbol),
            str(row.strategy),
            str(row.rank),
            str(row.slug),
            *(format_metric(name, getattr(row, name)) for name in HEADLINE_METRICS),
            str(row.note),
        )
    out.print(table)
    out.print(optimization_table(result.optimizations, result.source))
    if result.walk_forward_skipped:
        console.print(result.walk_forward_skipped)


@cli.command("stack")
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The stack's folder (servers' data, Dagster home, logs). "
    "[default: $CRYPTOTA_HOME/stack; as root /var/lib/cryptota/stack]",
)
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(0, 32),
    help="Celery workers for distributed_backtest_job.",
)
@click.option(
    "--port",
    "web_port",
    default=3000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Dagster UI port.",
)
@click.option("--grpc-port", default=4000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--postgres-port",
    default=5433,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port of the stack's own PostgreSQL (when no database is configured).",
)
@click.option("--redis-port", default=6380, show_default=True, type=click.IntRange(1, 65535),
              help="Port of the stack's own Redis (when no Redis is configured).")  # fmt: skip
def stack_command(
    root: Path | None,
    workers: int,
    web_port: int,
    grpc_port: int,
    postgres_port: int,
    redis_port: int,
) -> None:
    """The production deployment on this machine without Docker: PostgreSQL (TimescaleDB where
    installed) and Redis unless configured, the user-code server, daemon, webserver and Celery
    workers on the production dagster.yaml. Runs until SIGTERM or Ctrl-C, then stops them all."""
    from cryptota_pipelines.stack.stack import Stack, StackSpec, default_root, run_until_signalled

    settings = load_settings()
    spec = StackSpec(
        root=(root or default_root(settings)).expanduser().resolve(),
        workers=workers,
        web_port=web_port,
        grpc_port=grpc_port,
        postgres_port=postgres_port,
        redis_port=redis_port,
    )
    stack = Stack(spec=spec, settings=settings)

    def ready() -> None:
        console.print(f"[bold green]stack up[/]: Dagster UI at {stack.web_url}")
        console.print(f"  state and logs: {spec.root} (stack.json, logs/)")
        console.print(
            f"  in another shell: set -a; . {stack.env_file}; set +a; "
            "dagster sensor list -w $DAGSTER_WORKSPACE"
        )
        console.print("  SIGTERM or Ctrl-C stops every process")

    console.print(f"starting the stack in {spec.root}")
    sys.exit(run_until_signalled(stack, ready))


def optimization_table(optimizations: Any, source: str) -> Table:
    """The winner of each symbol's optimisation and how much of it is luck (DSR, PBO)."""
    table = Table(title=f"Parameter optimisation ({source} candles)")
    for column in ("symbol", "strategy", "sets", "winner", "objective", "score", "DSR", "PBO"):
        table.add_column(
            column,
            justify="left" if column in ("symbol", "strategy", "winner", "objective") else "right",
        )
    for row in optimizations.to_dict(orient="records"):
        stats = row["statistics"]
        significant = " (significant)" if stats.get("dsr_significant") else " (not significant)"
        table.add_row(
            str(row["symbol"]),
            str(row["strategy"]),
            f"{row['combinations']:,}",
            str(row["best_slug"]),
            str(row["objective"]),
            format_number(row["best_score"]),
            format_number(stats.get("dsr")) + significant,
            format_number(stats.get("pbo")),
        )
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script (errors: one line on stderr, non-zero exit)."""
    return core_main(argv)


if __name__ == "__main__":
    sys.exit(main())
