"""``cryptota ingest``, ``export``, ``price``, ``depth`` and ``balance``: market data in and out
of the store, and Binance snapshots."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import pandas as pd
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cryptota_core.app.ingest import (
    IngestReport,
    ingest,
    month_chunks,
    open_source,
)
from cryptota_core.backtest.cache import open_cache
from cryptota_core.cli.common import candle_input, cli, console, open_candle_store, out
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.frame import SeriesKey, normalise_symbol, parse_symbols
from cryptota_core.market.intervals import parse_interval, parse_window
from cryptota_core.settings import Settings, load_settings

if TYPE_CHECKING:
    pass


def _run_ingest(
    settings: Settings,
    source_name: str,
    symbols: list[str],
    interval: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> list[IngestReport]:
    store = open_candle_store(settings)
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

    candles = candle_input(symbol, interval, start, end, None, allow_partial)
    try:
        write_kline_csv(candles.frame, csv_path, interval=candles.interval)
    except OSError as e:
        raise InvalidInputError(f"cannot write --csv {csv_path}: {e.strerror or e}") from None
    first, last = candles.frame.index[0], candles.frame.index[-1]
    click.echo(
        f"wrote {len(candles.frame):,} {candles.interval} candles of {candles.key} "
        f"({first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC) to {csv_path}"
    )


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
