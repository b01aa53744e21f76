"""The ``cryptota`` command (DESIGN §2). Stable: scripts and users depend on its flags.

Every command turns bad input into one line on stderr and a non-zero exit, never a traceback.
One module per command group: :mod:`~cryptota_core.cli.market` (ingest, export, price, depth,
balance), :mod:`~cryptota_core.cli.backtest`, :mod:`~cryptota_core.cli.research` (optimize,
walk-forward) and :mod:`~cryptota_core.cli.results`; :mod:`~cryptota_core.cli.common` holds the
group, the consoles and the shared options. A command's module is imported when the command is
looked up (:class:`~cryptota_core.cli.common.LazyGroup`), so each command starts with only what it
uses.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from cryptota_core.cli.common import cli, console, out
from cryptota_core.errors import CryptotaError
from cryptota_core.logs import configure_logging
from cryptota_core.settings import load_settings


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


__all__ = ["cli", "console", "main", "out"]
