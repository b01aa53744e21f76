"""The ``cryptota`` command (DESIGN §2). Stable: scripts and users depend on its flags.

Every command turns bad input into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import click
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cryptota_core.cache import open_cache
from cryptota_core.errors import CryptotaError, InvalidInputError
from cryptota_core.ingest import (
    IngestReport,
    ingest,
    month_chunks,
    open_source,
)
from cryptota_core.logs import configure_logging
from cryptota_core.market.frame import SeriesKey, normalise_symbol, parse_symbols
from cryptota_core.market.intervals import parse_interval, parse_window
from cryptota_core.numbers import finite_or_none
from cryptota_core.settings import Settings, load_settings
from cryptota_core.storage.candle_store import CandleStore

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


@cli.command("backtest")
@click.option("--strategy", required=True, help="Registered strategy name, e.g. rsi.")
@click.option("--params", default=None, help="JSON object, e.g. '{\"period\":14}'.")
@click.option("--symbol", default=None, help="Symbol to read from the store.")
@click.option("--interval", default=None, help="Candle interval (default 1h; inferred for --csv).")
@click.option("--start", default=None, help="UTC start, inclusive (with --symbol).")
@click.option("--end", default=None, help="UTC end, exclusive (with --symbol).")
@click.option(
    "--csv",
    "csv_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="A Binance kline CSV instead of the store.",
)
@click.option(
    "--engine", type=click.Choice(["backtrader", "fast"]), default="backtrader", show_default=True
)
@click.option("--cash", type=float, default=10_000.0, show_default=True)
@click.option("--commission", type=float, default=0.001, show_default=True)
@click.option("--slippage", type=float, default=0.0, show_default=True)
@click.option("--stake", type=float, default=0.95, show_default=True)
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
    from cryptota_core.backtest.service import (
        backtest_or_cache,
        candles_from_csv,
        candles_from_store,
    )
    from cryptota_core.strategies import get_strategy

    spec = get_strategy(strategy)
    spec.parse_params(params)  # fail on bad parameters before reading any data
    if (csv_path is None) == (symbol is None):
        raise InvalidInputError("give exactly one of --symbol (with --start/--end) or --csv FILE")
    if csv_path is not None:
        candles = candles_from_csv(csv_path, parse_interval(interval) if interval else None)
    else:
        if start is None or end is None:
            raise InvalidInputError("--symbol needs --start and --end (UTC, end exclusive)")
        window = parse_window(start, end)
        candles = candles_from_store(
            _store(load_settings()),
            normalise_symbol(symbol or ""),
            parse_interval(interval or "1h"),
            *window,
        )
    done = backtest_or_cache(
        candles,
        strategy,
        params,
        cash=cash,
        commission=commission,
        slippage=slippage,
        stake=stake,
        cache=open_cache(load_settings()),
        engine=engine,
    )
    result = done.result
    if done.cached:
        console.print("served from the cache (identical run on identical candles)")
    if plot_path:
        from cryptota_core.backtest.plot import plot_backtest

        plot_backtest(result, plot_path)
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
        number = finite_or_none(value)
        shown = "-" if number is None else f"{number:,.4f}"
        table.add_row(name, shown, style="bold" if name in headline else None)
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
