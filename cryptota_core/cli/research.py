"""``cryptota optimize`` and ``walk-forward``: parameter searches on stored candles or a kline
CSV, stored with their lineage when the candles came from the store."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cryptota_core.backtest.engines import ENGINES
from cryptota_core.broker import BrokerSettings
from cryptota_core.cli.common import candle_input, candle_options, cli, console, out
from cryptota_core.display import format_metric, format_number
from cryptota_core.errors import InvalidInputError
from cryptota_core.research.search import DEFAULT_MAX_SETS, SearchSpec
from cryptota_core.settings import load_settings

if TYPE_CHECKING:
    from cryptota_core.app.candles import CandleInput
    from cryptota_core.research.lineage import Lineage
    from cryptota_core.research.optimize import OptimizationResult
    from cryptota_core.research.walk_forward import WalkForwardResult
    from cryptota_core.storage.research_store import ResearchStore
    from cryptota_core.strategies import StrategyParams


R = TypeVar("R")


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
    return sets, candle_input(symbol, interval, start, end, csv_path, allow_partial)


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
    if candles.key is None:
        return None
    from cryptota_core import CODE_VERSION
    from cryptota_core.research.lineage import Lineage

    return Lineage(
        exchange=candles.key.exchange,
        symbol=candles.key.symbol,
        candle_fingerprint=candles.fingerprint,
        code_version=CODE_VERSION,
    )


def _research_store() -> ResearchStore:
    from cryptota_core.storage.research_store import ResearchStore

    return ResearchStore.from_url(load_settings().resolved_database_url)


@dataclass(frozen=True)
class SearchOptions:
    """The options ``optimize`` and ``walk-forward`` share (:func:`_search_options` and
    :func:`~cryptota_core.cli.common.candle_options`), as click passes them."""

    strategy: str
    grid: str | None
    method: str
    samples: int | None
    seed: int
    max_sets: int
    objective: str
    as_json: bool
    symbol: str | None
    interval: str | None
    start: str | None
    end: str | None
    allow_partial: bool
    csv_path: str | None
    cash: float
    commission: float
    slippage: float
    stake: float


Search = Callable[
    [
        SearchSpec,
        "CandleInput",
        BrokerSettings,
        Callable[[str, int, int], None],
        "list[StrategyParams]",
    ],
    R,
]
"""A search run: the spec, the candles, the broker settings, a progress callback and the
parameter sets, to a result."""


def _run_search(
    options: SearchOptions,
    search: Search[R],
    *,
    save: Callable[[ResearchStore, R, Lineage], str],
    stored_as: str,
    check: Callable[[SearchSpec], None] | None = None,
) -> tuple[R, CandleInput]:
    """The one pipeline of ``optimize`` and ``walk-forward``: validate the search and the broker
    settings (and ``check`` the command's own options), read the candles (the coverage rule
    applies), run the search with a progress bar per stage, and store the result with its
    lineage when the candles came from the store. Every bad option fails before any candle is
    read."""
    spec = _search_spec(
        options.strategy,
        options.grid,
        options.method,
        options.samples,
        options.seed,
        options.max_sets,
    )
    broker = BrokerSettings(
        cash=options.cash,
        commission=options.commission,
        slippage=options.slippage,
        stake=options.stake,
    )
    if check is not None:
        check(spec)
    sets, candles = _search_inputs(
        spec,
        options.objective,
        options.symbol,
        options.interval,
        options.start,
        options.end,
        options.csv_path,
        options.allow_partial,
    )
    with _stage_progress() as progress:
        result = search(spec, candles, broker, progress, sets)
    lineage = _lineage(candles)
    if lineage is not None:
        key = save(_research_store(), result, lineage)
        console.print(f"stored as {stored_as} {key}")
    return result, candles


@cli.command("optimize")
@_search_options
@candle_options
@click.option("--top", type=int, default=10, show_default=True, help="Best sets to report.")
@click.option(
    "--recheck",
    type=int,
    default=None,
    help="How many of the top sets to re-run set by set, to check the sweep's figures "
    "(default: CRYPTOTA_OPTIMIZATION_RECHECK, 1: the winner).",
)
@click.option(
    "--recheck-engine",
    type=click.Choice(ENGINES),
    default=None,
    help="Engine of the re-check: fast (numba event loop, ~0.1 s per set on a year of 1m) or "
    "backtrader (the reference, ~30 s per set) (default: CRYPTOTA_OPTIMIZATION_RECHECK_ENGINE, "
    "fast).",
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
@click.option(
    "--min-trades",
    type=int,
    default=None,
    help="Drop parameter sets with fewer closed trades before ranking and before PSR/DSR/PBO "
    "count their trials (0 keeps every set; default: CRYPTOTA_OPTIMIZATION_MIN_TRADES, 5).",
)
@click.option(
    "--significance-period",
    default=None,
    help="Period PSR, DSR and PBO aggregate returns to: 1m … 12h, 1d or 1w; candles as long "
    "as it or longer are used as they are (default: CRYPTOTA_OPTIMIZATION_SIGNIFICANCE_PERIOD, "
    "1d).",
)
def optimize_command(
    top: int,
    recheck: int | None,
    recheck_engine: str | None,
    heatmap_path: str | None,
    heatmap_x: str | None,
    heatmap_y: str | None,
    min_trades: int | None,
    significance_period: str | None,
    **common: Any,
) -> None:
    """Search a parameter grid: sweep every set, re-check the best set by set, and report
    the winner's deflated Sharpe ratio and the search's probability of overfitting."""
    from cryptota_core.research.optimize import (
        OptimizeSettings,
        check_recheck,
        heatmap_axes,
        optimize,
    )

    options = SearchOptions(**common)
    configured = load_settings()
    settings = OptimizeSettings(  # a bad value is one line here, before any candle is read
        min_trades=configured.optimization_min_trades if min_trades is None else min_trades,
        significance_period=significance_period or configured.optimization_significance_period,
    )
    recheck = configured.optimization_recheck if recheck is None else recheck
    engine = recheck_engine or configured.optimization_recheck_engine

    def check(spec: SearchSpec) -> None:
        check_recheck(recheck, engine)
        if heatmap_path:
            heatmap_axes(spec.grid, heatmap_x, heatmap_y)

    def search(
        spec: SearchSpec,
        candles: CandleInput,
        broker: BrokerSettings,
        progress: Callable[[str, int, int], None],
        sets: list[StrategyParams],
    ) -> OptimizationResult:
        return optimize(
            candles.frame,
            spec,
            interval=candles.interval,
            objective=options.objective,
            top=top,
            recheck=recheck,
            recheck_engine=engine,
            broker=broker,
            progress=progress,
            sets=sets,
            settings=settings,
        )

    result, candles = _run_search(
        options,
        search,
        save=lambda store, found, lineage: store.save_optimization(found, lineage),
        stored_as="optimisation run",
        check=check,
    )
    if heatmap_path:
        from cryptota_core.charts import ChartSubject
        from cryptota_core.research.plots import plot_heatmap

        plot_heatmap(result, heatmap_path, heatmap_x, heatmap_y, subject=ChartSubject.of(candles))
        console.print(f"heatmap written to {heatmap_path}")
    if options.as_json:
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
        engine = ENGINE_NAMES.get(result.rechecks[0].engine, result.rechecks[0].engine)
        best = "the winner" if len(result.rechecks) == 1 else f"the best {len(result.rechecks)}"
        out.print(
            f"re-check: {best} re-run set by set on {engine}, compared with the sweep "
            "kernel's figures (--recheck N for more, --recheck-engine backtrader for the "
            "reference engine)"
        )
    stats = result.statistics
    significant = "significant" if stats["dsr_significant"] else "not significant"
    trials = f"{stats['n_trials']:,} trials"
    eligible = stats.get("eligible_sets", result.combinations)
    if eligible != result.combinations:
        trials += (
            f": {result.combinations - eligible:,} of the {result.combinations:,} sets have "
            f"fewer than {stats['min_trades']} trades (--min-trades) and did not compete"
        )
    if stats["n_trials"] != eligible:
        trials += (
            f"; {eligible - stats['n_trials']:,} competing sets have no Sharpe ratio (flat "
            "equity) and are not trials"
        )
    out.print(
        f"winner {result.best_slug}: {result.objective} {format_number(result.best_score)}, "
        f"PSR {format_number(stats['psr'])}, deflated Sharpe ratio {format_number(stats['dsr'])} "
        f"({significant} at 95% after {trials})"
    )
    out.print(
        f"significance on {stats['effective_observations']:,} {stats['significance_period']} "
        f"returns; haircut Sharpe ratio {format_number(stats['haircut_sharpe_annualised'])} "
        "(annualised)"
    )
    if stats["pbo"] is not None:
        blocks = f"{stats['pbo_blocks']} blocks"
        if stats["pbo_blocks"] < DEFAULT_BLOCKS:
            blocks += (
                f", fewer than {DEFAULT_BLOCKS}: each block needs {MIN_BLOCK_RETURNS} "
                f"{stats['significance_period']} returns"
            )
        out.print(
            f"probability of backtest overfitting {format_metric('pbo', stats['pbo'])} "
            f"(CSCV, {blocks}, {stats['pbo_combinations']:,} combinations; "
            f"{format_metric('pbo', stats['pbo_flat_as_zero'])} if a set's flat half counts "
            "as a zero return)"
        )


ENGINE_NAMES = {"fast": "the fast engine", "backtrader": "backtrader"}


@cli.command("walk-forward")
@_search_options
@candle_options
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
    windows: int,
    in_sample_ratio: float,
    anchored: bool,
    plot_path: str | None,
    **common: Any,
) -> None:
    """Optimise in sample, trade the winner out of sample, roll forward; report the stitched
    out-of-sample result, walk-forward efficiency and parameter stability."""
    from cryptota_core.research.walk_forward import walk_forward

    options = SearchOptions(**common)

    def search(
        spec: SearchSpec,
        candles: CandleInput,
        broker: BrokerSettings,
        progress: Callable[[str, int, int], None],
        sets: list[StrategyParams],
    ) -> WalkForwardResult:
        return walk_forward(
            candles.frame,
            spec,
            interval=candles.interval,
            objective=options.objective,
            windows=windows,
            in_sample_ratio=in_sample_ratio,
            anchored=anchored,
            broker=broker,
            progress=progress,
            sets=sets,
        )

    result, candles = _run_search(
        options,
        search,
        save=lambda store, found, lineage: store.save_walk_forward(found, lineage),
        stored_as="walk-forward report",
    )
    if plot_path:
        from cryptota_core.charts import ChartSubject
        from cryptota_core.research.plots import plot_walk_forward

        plot_walk_forward(
            result, plot_path, subject=ChartSubject.of(candles), close=candles.frame["close"]
        )
        console.print(f"plot written to {plot_path}")
    if options.as_json:
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
