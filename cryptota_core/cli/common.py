"""What every ``cryptota`` command shares: the click group, the two consoles (messages on stderr,
results on stdout), the candle store, and the candle and broker options of the commands that run
on candles."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from cryptota_core.broker import DEFAULT_BROKER
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.frame import normalise_symbol
from cryptota_core.market.intervals import parse_interval, parse_window
from cryptota_core.settings import Settings, load_settings

if TYPE_CHECKING:
    from cryptota_core.app.candles import CandleInput
    from cryptota_core.storage.candle_store import CandleStore

PIPED_WIDTH = 240
"""Columns of ``out`` when stdout is a file or a pipe (and ``COLUMNS`` does not say): such output
has no width of its own, and at rich's fallback (80, as at the 120 used before) the demo's
leaderboard squeezed every header and value to an ellipsis. Tables never grow past their
natural width, so a wide limit only stops the squeezing."""


def _out_width() -> int | None:
    """None on a terminal (rich measures it), else ``COLUMNS`` or :data:`PIPED_WIDTH`."""
    if sys.stdout.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


console = Console(stderr=True)
out = Console(width=_out_width())


class LazyGroup(click.Group):
    """A group whose commands live in modules imported only when a command is looked up: one
    command pays for its own imports (``optimize`` on a CSV never loads SQLAlchemy, redis or the
    exchange client), while ``--help`` and completion still see every command."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)
        """Command name → the module that registers it on this group when imported."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            importlib.import_module(self.lazy[cmd_name])
        return super().get_command(ctx, cmd_name)


COMMAND_MODULES: dict[str, str] = {
    **dict.fromkeys(("ingest", "export", "price", "depth", "balance"), "cryptota_core.cli.market"),
    "backtest": "cryptota_core.cli.backtest",
    "optimize": "cryptota_core.cli.research",
    "walk-forward": "cryptota_core.cli.research",
    "results": "cryptota_core.cli.results",
}
"""Where each of the core's commands is defined (the pipelines add ``demo`` and ``stack``)."""


def import_command(args: Sequence[str]) -> None:
    """Import the module of the command ``args`` names (their first word that is not an
    option) now, as :class:`LazyGroup` would when it looks the command up; nothing for a
    command defined elsewhere or no command. For a caller that wants the imports done first
    (the console script: :mod:`cryptota_pipelines.console`)."""
    name = next((arg for arg in args if not arg.startswith("-")), None)
    if name in COMMAND_MODULES:
        importlib.import_module(COMMAND_MODULES[name])


@click.group(cls=LazyGroup, lazy=COMMAND_MODULES)
def cli() -> None:
    """CryptoTA: Binance market data, backtests and strategy research."""


def open_candle_store(settings: Settings) -> CandleStore:
    """The candle store the settings name, creating CRYPTOTA_HOME first (the embedded SQLite
    file lives there). Imported here, not at the top: a command on a CSV never opens a store,
    and SQLAlchemy is a tenth of a second of every start-up."""
    from cryptota_core.storage.candle_store import CandleStore

    settings.home.mkdir(parents=True, exist_ok=True)
    return CandleStore.from_url(settings.resolved_database_url)


def candle_input(
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
    from cryptota_core.app.candles import candles_from_csv, candles_from_store

    if (csv_path is None) == (symbol is None):
        raise InvalidInputError("give exactly one of --symbol (with --start/--end) or --csv FILE")
    if csv_path is not None:
        return candles_from_csv(csv_path, parse_interval(interval) if interval else None)
    if start is None or end is None:
        raise InvalidInputError("--symbol needs --start and --end (UTC, end exclusive)")
    return candles_from_store(
        open_candle_store(load_settings()),
        normalise_symbol(symbol or ""),
        parse_interval(interval or "1h"),
        *parse_window(start, end),
        allow_partial=allow_partial,
    )


def candle_options(command: Callable[..., None]) -> Callable[..., None]:
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
