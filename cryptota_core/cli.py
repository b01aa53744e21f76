"""The ``cryptota`` command (DESIGN §2). Stable: scripts and users depend on its flags.

Every command turns bad input into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click
import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cryptota_core.backtest.broker import DEFAULT_BROKER, BrokerSettings
from cryptota_core.cache import open_cache
from cryptota_core.display import format_metric, format_number
from cryptota_core.errors import CryptotaError, InvalidInputError, NoDataError
from cryptota_core.ingest import (
    IngestReport,
    ingest,
    month_chunks,
    open_source,
)
from cryptota_core.logs import configure_logging
from cryptota_core.market.frame import SeriesKey, normalise_symbol, parse_symbols
from cryptota_core.market.intervals import parse_interval, parse_window
from cryptota_core.research.search import DEFAULT_MAX_SETS, SearchSpec
from cryptota_core.settings import Settings, load_settings
from cryptota_core.storage.candle_store import CandleStore

if TYPE_CHECKING:
    from cryptota_core.backtest.service import CandleInput
    from cryptota_core.research.optimize import OptimizationResult
    from cryptota_core.storage.research_store import Lineage, ResearchStore
    from cryptota_core.strategies import StrategyParams

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 120)


@click.group()
def cli() -> None:
    """CryptoTA: Binance market data, backtests and strategy research."""


def _store(settings: Settings) -> CandleStore:
    settings.home.mkdir(parents=True, exist_ok=True)
    return CandleStore.from_url(settings.resolved_database_url)


def _run_ingest(
    settings: Settings,
    source_name: str,
    symbols: list[str],
    interval: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> list[IngestReport]:
    store = _store(settings)
    source = open_source(source_name, settings)
    if source.exchange == "synthetic":
        console.print(
            "[bold yellow]SYNTHETIC DATA[/]: simulated candles, stored under exchange "
            "'synthetic' and never mixed with Binance data"
        )
    chunks = len(list(month_chunks(start, end))) * len(symbols)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=not console.is_terminal,
    ) as progress:
        task = progress.add_task(f"ingest {interval} from {source_name}", total=chunks)

        def advance(key: SeriesKey, chunk_start: pd.Timestamp, _end: pd.Timestamp, n: int) -> None:
            progress.update(
                task, advance=1, description=f"{key.symbol} {chunk_start:%Y-%m} ({n:,} candles)"
            )

        return ingest(
            store,
            source,
            symbols,
            interval,
            start,
            end,
            on_chunk=advance,
            cache=open_cache(settings),
        )


def _print_summary(reports: list[IngestReport]) -> None:
    table = Table(title="Ingested candles")
    for column in (
        "exchange",
        "symbol",
        "interval",
        "rows",
        "first candle",
        "last candle",
        "gaps",
        "missing",
    ):
        table.add_column(
            column, justify="right" if column in ("rows", "gaps", "missing") else "left"
        )
    for report in reports:
        key = report.key
        table.add_row(
            key.exchange,
            key.symbol,
            key.interval,
            f"{report.received:,}",
            report.first.isoformat() if report.first is not None else "-",
            report.last.isoformat() if report.last is not None else "-",
            str(len(report.gaps)),
            f"{report.missing:,}",
        )
    out.print(table)


@cli.command("ingest")
@click.option(
    "--source",
    "source_name",
    type=click.Choice(["binance", "archive", "synthetic"]),
    default=None,
    help="Where candles come from (default: CRYPTOTA_SOURCE).",
)
@click.option("--symbols", default=None, help="Comma-separated, e.g. BTCUSDT,ETHUSDT.")
@click.option(
    "--interval", default=None, help="Candle interval, e.g. 1m (default CRYPTOTA_INTERVAL)."
)
@click.option("--start", required=True, help="UTC start date, inclusive (2024-01-01).")
@click.option("--end", required=True, help="UTC end date, exclusive (2024-02-01).")
def ingest_command(
    source_name: str | None, symbols: str | None, interval: str | None, start: str, end: str
) -> None:
    """Fetch candles from a source into the store (idempotent: re-running changes nothing)."""
    settings = load_settings()
    window = parse_window(start, end)
    reports = _run_ingest(
        settings,
        source_name or settings.source,
        parse_symbols(symbols) if symbols else settings.symbols,
        parse_interval(interval) if interval else settings.interval,
        *window,
    )
    _print_summary(reports)


def _candle_input(
    symbol: str | None,
    interval: str | None,
    start: str | None,
    end: str | None,
    csv_path: str | None,
    allow_partial: bool = False,
) -> CandleInput:
    """The candles a research command runs on: ``--symbol`` with ``--start``/``--end`` from the
    store (which must cover the window unless ``--allow-partial``), or ``--csv FILE``; exactly
    one of the two."""
    from cryptota_core.backtest.service import candles_from_csv, candles_from_store

    if (csv_path is None) == (symbol is None):
        raise InvalidInputError("give exactly one of --symbol (with --start/--end) or --csv FILE")
    if csv_path is not None:
        return candles_from_csv(csv_path, parse_interval(interval) if interval else None)
    if start is None or end is None:
        raise InvalidInputError("--symbol needs --start and --end (UTC, end exclusive)")
    return candles_from_store(
        _store(load_settings()),
        normalise_symbol(symbol or ""),
        parse_interval(interval or "1h"),
        *parse_window(start, end),
        allow_partial=allow_partial,
    )


def _candle_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--symbol/--interval/--start/--end | --csv`` and the broker settings, shared by the
    research commands. The settings' defaults are :data:`DEFAULT_BROKER`'s, so ``--help`` shows
    the numbers every engine uses when a flag is left out."""
    options = [
        click.option("--symbol", default=None, help="Symbol to read from the store."),
        click.option(
            "--interval", default=None, help="Candle interval (default 1h; inferred for --csv)."
        ),
        click.option("--start", default=None, help="UTC start, inclusive (with --symbol)."),
        click.option("--end", default=None, help="UTC end, exclusive (with --symbol)."),
        click.option(
            "--allow-partial",
            is_flag=True,
            help="Use the stored part of a window the store does not cover, and say which "
            "(by default such a window is refused).",
        ),
        click.option(
            "--csv",
            "csv_path",
            default=None,
            type=click.Path(dir_okay=False),
            help="A Binance kline CSV instead of the store.",
        ),
        *(
            click.option(f"--{name}", type=float, default=default, show_default=True)
            for name, default in DEFAULT_BROKER.kwargs().items()
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _search_options(command: Callable[..., None]) -> Callable[..., None]:
    """What to search: strategy, grid, method, objective, size limit."""
    options = [
        click.option("--strategy", required=True, help="Registered strategy name, e.g. rsi."),
        click.option(
            "--grid",
            default=None,
            help='JSON object of value lists, e.g. \'{"period":[7,14],"oversold":[20,30]}\' '
            "(default: the strategy's own small grid).",
        ),
        click.option(
            "--method", type=click.Choice(["grid", "random"]), default="grid", show_default=True
        ),
        click.option("--samples", type=int, default=None, help="Sets drawn by --method random."),
        click.option("--seed", type=int, default=0, show_default=True, help="Random search seed."),
        click.option(
            "--max-sets",
            type=int,
            default=DEFAULT_MAX_SETS,
            show_default=True,
            help="Refuse a search of more parameter sets than this.",
        ),
        click.option(
            "--objective",
            default="sharpe",
            show_default=True,
            help="sharpe, sortino, calmar, total_return, sqn (or the full metric name).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _search_spec(
    strategy: str, grid: str | None, method: str, samples: int | None, seed: int, max_sets: int
) -> SearchSpec:
    """The validated search (pydantic errors become one line naming the field)."""
    from pydantic import ValidationError

    from cryptota_core.strategies import get_strategy

    spec = get_strategy(strategy)
    try:
        return SearchSpec(
            strategy=spec.name,
            grid=grid if grid is not None else spec.default_grid,
            method=method,
            samples=samples,
            seed=seed,
            max_sets=max_sets,
        )
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "search"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidInputError(f"--{where.replace('_', '-')}: {message}") from None


def _search_inputs(
    spec: SearchSpec,
    objective: str,
    symbol: str | None,
    interval: str | None,
    start: str | None,
    end: str | None,
    csv_path: str | None,
    allow_partial: bool,
) -> tuple[list[StrategyParams], CandleInput]:
    """The parameter sets and the candles of a search; every bad objective, grid or size fails
    before any candle is read."""
    from cryptota_core.research.optimize import objective_column
    from cryptota_core.research.search import parameter_sets

    objective_column(objective)
    sets = parameter_sets(spec)
    return sets, _candle_input(symbol, interval, start, end, csv_path, allow_partial)


@contextmanager
def _stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per stage of a long research command, on stderr."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        yield report


def _lineage(candles: CandleInput) -> Lineage | None:
    """Where a stored research result comes from; None for a CSV (nothing to store it under)."""
    from cryptota_core.backtest.service import CODE_VERSION
    from cryptota_core.storage.research_store import Lineage

    if candles.key is None:
        return None
    return Lineage(
        exchange=candles.key.exchange,
        symbol=candles.key.symbol,
        candle_fingerprint=candles.fingerprint,
        code_version=CODE_VERSION,
    )


def _research_store() -> ResearchStore:
    from cryptota_core.storage.research_store import ResearchStore

    return ResearchStore.from_url(load_settings().resolved_database_url)


@cli.command("backtest")
@click.option("--strategy", required=True, help="Registered strategy name, e.g. rsi.")
@click.option("--params", default=None, help="JSON object, e.g. '{\"period\":14}'.")
@_candle_options
@click.option(
    "--engine", type=click.Choice(["backtrader", "fast"]), default="backtrader", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (DESIGN §2).")
@click.option(
    "--plot",
    "plot_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write an equity/drawdown PNG with the trades marked.",
)
def backtest_command(
    strategy: str,
    params: str | None,
    symbol: str | None,
    interval: str | None,
    start: str | None,
    end: str | None,
    allow_partial: bool,
    csv_path: str | None,
    engine: str,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
    as_json: bool,
    plot_path: str | None,
) -> None:
    """Run one strategy configuration on stored candles or a Binance kline CSV."""
    from cryptota_core.backtest.service import backtest_or_cache
    from cryptota_core.strategies import get_strategy

    spec = get_strategy(strategy)
    spec.parse_params(params)  # fail on bad parameters before reading any data
    broker = BrokerSettings(cash=cash, commission=commission, slippage=slippage, stake=stake)
    candles = _candle_input(symbol, interval, start, end, csv_path, allow_partial)
    done = backtest_or_cache(
        candles,
        strategy,
        params,
        cash=broker.cash,
        commission=broker.commission,
        slippage=broker.slippage,
        stake=broker.stake,
        cache=open_cache(load_settings()),
        engine=engine,
    )
    result = done.result
    if done.cached:
        console.print("served from the cache (identical run on identical candles)")
    if plot_path:
        from cryptota_core.backtest.plot import plot_backtest
        from cryptota_core.charts import ChartSubject

        plot_backtest(result, plot_path, subject=ChartSubject.of(candles))
        console.print(f"plot written to {plot_path}")
    if as_json:
        print(json.dumps(result.to_dict(), allow_nan=False))
        return
    table = Table(
        title=f"{result.slug} on {candles.origin} ({result.bars:,} {result.interval} candles)"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    # Every metric, as backtesting.py prints its stats: the headline first, in bold.
    headline = result.headline()
    for name, value in {**headline, **result.metrics}.items():
        table.add_row(name, format_metric(name, value), style="bold" if name in headline else None)
    out.print(table)


@cli.command("optimize")
@_search_options
@_candle_options
@click.option("--top", type=int, default=10, show_default=True, help="Best sets to report.")
@click.option(
    "--recheck",
    type=int,
    default=None,
    help="How many of the top sets to re-run on backtrader (default: all of --top).",
)
@click.option(
    "--heatmap",
    "heatmap_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write a PNG of the objective over two parameters.",
)
@click.option("--heatmap-x", default=None, help="Parameter on the heatmap's x axis.")
@click.option("--heatmap-y", default=None, help="Parameter on the heatmap's y axis.")
def optimize_command(
    strategy: str,
    grid: str | None,
    method: str,
    samples: int | None,
    seed: int,
    max_sets: int,
    objective: str,
    as_json: bool,
    symbol: str | None,
    interval: str | None,
    start: str | None,
    end: str | None,
    allow_partial: bool,
    csv_path: str | None,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
    top: int,
    recheck: int | None,
    heatmap_path: str | None,
    heatmap_x: str | None,
    heatmap_y: str | None,
) -> None:
    """Search a parameter grid: sweep every set, re-check the best on backtrader, and report
    the winner's deflated Sharpe ratio and the search's probability of overfitting."""
    from cryptota_core.research.optimize import heatmap_axes, optimize

    spec = _search_spec(strategy, grid, method, samples, seed, max_sets)
    broker = BrokerSettings(cash=cash, commission=commission, slippage=slippage, stake=stake)
    if heatmap_path:
        heatmap_axes(spec.grid, heatmap_x, heatmap_y)
    sets, candles = _search_inputs(
        spec, objective, symbol, interval, start, end, csv_path, allow_partial
    )
    with _stage_progress() as progress:
        result = optimize(
            candles.frame,
            spec,
            interval=candles.interval,
            objective=objective,
            top=top,
            recheck=recheck,
            broker=broker,
            progress=progress,
            sets=sets,
        )
    lineage = _lineage(candles)
    if lineage is not None:
        key = _research_store().save_optimization(result, lineage)
        console.print(f"stored as optimisation run {key}")
    if heatmap_path:
        from cryptota_core.charts import ChartSubject
        from cryptota_core.research.plots import plot_heatmap

        plot_heatmap(result, heatmap_path, heatmap_x, heatmap_y, subject=ChartSubject.of(candles))
        console.print(f"heatmap written to {heatmap_path}")
    if as_json:
        print(json.dumps(result.to_dict(), allow_nan=False))
        return
    _print_optimization(result, candles.origin)


def _print_optimization(result: OptimizationResult, origin: str) -> None:
    from cryptota_core.research.optimize import MIN_BLOCK_RETURNS
    from cryptota_core.research.statistics import DEFAULT_BLOCKS

    table = Table(
        title=f"{result.strategy}: best {len(result.top)} of {result.combinations:,} sets by "
        f"{result.objective} on {origin} ({result.sweep.bars:,} {result.interval} candles)"
    )
    columns = [result.objective, "total_return", "max_drawdown", "trade_count", "win_rate"]
    columns = list(dict.fromkeys(columns))
    for name in ["rank", "slug", *columns, "re-check"]:
        table.add_column(name, justify="left" if name == "slug" else "right", no_wrap=True)
    checks = {c.slug: c for c in result.rechecks}
    for row in result.top.to_dict(orient="records"):
        check = checks.get(str(row["slug"]))
        verdict = "-" if check is None else ("reproduced" if check.reproduced else "DIFFERS")
        table.add_row(
            str(row["rank"]),
            str(row["slug"]),
            *(format_metric(name, row[name]) for name in columns),
            verdict,
        )
    out.print(table)
    if result.sweep.engine == "backtrader":
        out.print(
            f"re-check: none ({result.strategy} has no sweep kernel, so the sweep itself ran "
            "on backtrader)"
        )
    elif result.rechecks:
        out.print(
            f"re-check: the best {len(result.rechecks)} re-run on backtrader, compared with "
            "the sweep kernel's figures"
        )
    stats = result.statistics
    significant = "significant" if stats["dsr_significant"] else "not significant"
    trials = f"{stats['n_trials']:,} trials"
    if stats["n_trials"] != result.combinations:
        trials += (
            f": {result.combinations - stats['n_trials']:,} of the {result.combinations:,} sets "
            "have no Sharpe ratio (no trade, or flat equity) and are not trials"
        )
    out.print(
        f"winner {result.best_slug}: {result.objective} {format_number(result.best_score)}, "
        f"PSR {format_number(stats['psr'])}, deflated Sharpe ratio {format_number(stats['dsr'])} "
        f"({significant} at 95% after {trials})"
    )
    if stats["pbo"] is not None:
        blocks = f"{stats['pbo_blocks']} blocks"
        if stats["pbo_blocks"] < DEFAULT_BLOCKS:
            blocks += f", fewer than {DEFAULT_BLOCKS}: each block needs {MIN_BLOCK_RETURNS} returns"
        out.print(
            f"probability of backtest overfitting {format_metric('pbo', stats['pbo'])} "
            f"(CSCV, {blocks}, {stats['pbo_combinations']:,} combinations)"
        )


@cli.command("walk-forward")
@_search_options
@_candle_options
@click.option("--windows", type=int, default=5, show_default=True, help="Out-of-sample windows.")
@click.option(
    "--in-sample-ratio",
    type=float,
    default=3.0,
    show_default=True,
    help="In-sample length as a multiple of one out-of-sample window.",
)
@click.option("--anchored", is_flag=True, help="In-sample windows all start at the first candle.")
@click.option(
    "--plot",
    "plot_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write a PNG of the stitched out-of-sample equity.",
)
def walk_forward_command(
    strategy: str,
    grid: str | None,
    method: str,
    samples: int | None,
    seed: int,
    max_sets: int,
    objective: str,
    as_json: bool,
    symbol: str | None,
    interval: str | None,
    start: str | None,
    end: str | None,
    allow_partial: bool,
    csv_path: str | None,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
    windows: int,
    in_sample_ratio: float,
    anchored: bool,
    plot_path: str | None,
) -> None:
    """Optimise in sample, trade the winner out of sample, roll forward; report the stitched
    out-of-sample result, walk-forward efficiency and parameter stability."""
    from cryptota_core.research.walk_forward import walk_forward

    spec = _search_spec(strategy, grid, method, samples, seed, max_sets)
    broker = BrokerSettings(cash=cash, commission=commission, slippage=slippage, stake=stake)
    sets, candles = _search_inputs(
        spec, objective, symbol, interval, start, end, csv_path, allow_partial
    )
    with _stage_progress() as progress:
        result = walk_forward(
            candles.frame,
            spec,
            interval=candles.interval,
            objective=objective,
            windows=windows,
            in_sample_ratio=in_sample_ratio,
            anchored=anchored,
            broker=broker,
            progress=progress,
            sets=sets,
        )
    lineage = _lineage(candles)
    if lineage is not None:
        key = _research_store().save_walk_forward(result, lineage)
        console.print(f"stored as walk-forward report {key}")
    if plot_path:
        from cryptota_core.charts import ChartSubject
        from cryptota_core.research.plots import plot_walk_forward

        plot_walk_forward(
            result, plot_path, subject=ChartSubject.of(candles), close=candles.frame["close"]
        )
        console.print(f"plot written to {plot_path}")
    if as_json:
        print(json.dumps(result.to_dict(), allow_nan=False))
        return
    table = Table(title=f"{result.strategy} walk-forward on {candles.origin} by {result.objective}")
    for name in ("window", "out of sample", "chosen", "in-sample score", "oos score", "oos return"):
        table.add_column(name, justify="right" if "score" in name or "return" in name else "left")
    for w in result.windows:
        table.add_row(
            str(w.window_no),
            f"{w.out_sample_start:%Y-%m-%d} .. {w.out_sample_end:%Y-%m-%d}",
            w.best_slug,
            format_number(w.in_sample_score),
            format_number(w.out_sample_score),
            format_metric("total_return", w.out_sample_return),
        )
    out.print(table)
    stats = result.statistics
    out.print(
        "stitched out-of-sample: total return "
        f"{format_metric('total_return', stats['oos_total_return'])}, "
        f"Sharpe {format_number(stats['oos_sharpe_ratio'])}, max drawdown "
        f"{format_metric('max_drawdown', stats['oos_max_drawdown'])}; walk-forward efficiency "
        f"{format_number(stats['walk_forward_efficiency'])} (median of "
        f"{stats['walk_forward_efficiency_window_count']} windows); "
        f"{format_metric('win_rate', stats['profitable_windows'])} of windows profitable; most "
        f"chosen {stats['modal_slug']} ({format_metric('win_rate', stats['modal_slug_share'])} "
        "of windows)"
    )


@cli.command("export")
@click.option("--symbol", required=True, help="Symbol to read from the store, e.g. BTCUSDT.")
@click.option("--interval", default="1h", show_default=True, help="Candle interval.")
@click.option("--start", required=True, help="UTC start date, inclusive (2024-01-01).")
@click.option("--end", required=True, help="UTC end date, exclusive (2024-02-01).")
@click.option(
    "--allow-partial",
    is_flag=True,
    help="Export the stored part of a window the store does not cover (default: refuse).",
)
@click.option(
    "--csv",
    "csv_path",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="File to write: a Binance kline CSV, as the archive's files are.",
)
def export_command(
    symbol: str, interval: str, start: str, end: str, allow_partial: bool, csv_path: str
) -> None:
    """Write stored candles as a Binance kline CSV, the file `--csv` reads back (to share a
    window, or to run another tool on exactly the candles a backtest saw)."""
    from cryptota_core.market.binance_csv import write_kline_csv

    candles = _candle_input(symbol, interval, start, end, None, allow_partial)
    try:
        write_kline_csv(candles.frame, csv_path, interval=candles.interval)
    except OSError as e:
        raise InvalidInputError(f"cannot write --csv {csv_path}: {e.strerror or e}") from None
    first, last = candles.frame.index[0], candles.frame.index[-1]
    click.echo(
        f"wrote {len(candles.frame):,} {candles.interval} candles of {candles.key} "
        f"({first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC) to {csv_path}"
    )


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


@cli.command("price")
@click.argument("symbol")
def price_command(symbol: str) -> None:
    """Latest price of SYMBOL on Binance (BINANCE_BASE_URL)."""
    from cryptota_core.market.snapshot import current_price

    out.print(f"{normalise_symbol(symbol)} {current_price(normalise_symbol(symbol)):.8f}")


@cli.command("depth")
@click.argument("symbol")
@click.option("--limit", type=click.IntRange(1, 5000), default=10, show_default=True)
def depth_command(symbol: str, limit: int) -> None:
    """Order book of SYMBOL: the best LIMIT bids and asks."""
    from cryptota_core.market.snapshot import order_book

    book = order_book(normalise_symbol(symbol), limit)
    table = Table(title=f"{book.symbol} order book (spread {book.spread:.8f})")
    for column in ("bid qty", "bid", "ask", "ask qty"):
        table.add_column(column, justify="right")
    for i in range(max(len(book.bids), len(book.asks))):
        bid = book.bids.iloc[i] if i < len(book.bids) else None
        ask = book.asks.iloc[i] if i < len(book.asks) else None
        table.add_row(
            f"{bid['quantity']:.8f}" if bid is not None else "",
            f"{bid['price']:.8f}" if bid is not None else "",
            f"{ask['price']:.8f}" if ask is not None else "",
            f"{ask['quantity']:.8f}" if ask is not None else "",
        )
    out.print(table)


@cli.command("balance")
@click.option("--all", "include_zero", is_flag=True, help="Include zero balances.")
def balance_command(include_zero: bool) -> None:
    """Account balances (signed request; needs BINANCE_API_KEY and BINANCE_API_SECRET)."""
    from cryptota_core.market.snapshot import account_balances

    balances = account_balances(include_zero=include_zero)
    table = Table(title="Binance balances")
    for column in ("asset", "free", "locked", "total"):
        table.add_column(column, justify="left" if column == "asset" else "right")
    for asset, row in balances.iterrows():
        table.add_row(
            str(asset), f"{row['free']:.8f}", f"{row['locked']:.8f}", f"{row['total']:.8f}"
        )
    out.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script: one clear line on stderr for any user error."""
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Abort:
        console.print("aborted")
        return 130
    except click.ClickException as e:
        print(f"error: {e.format_message()}", file=sys.stderr)
        return 2
    except CryptotaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
