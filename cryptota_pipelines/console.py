"""The ``cryptota`` console script, with the garbage collector kept off the start-up's objects.

Importing pandas, numba and pydantic creates about a million objects that live as long as the
process. CPython's collector would traverse them at every full collection while the command
runs (0.2 s of a short command) and once more at interpreter exit (0.3 s), finding nothing to
free. So the console script imports the command's modules with the collector off, then moves
everything it has to the permanent generation (:func:`gc.freeze`) and turns the collector back
on for the command's own objects; at exit it freezes again, so the last collections skip the
lot (the operating system takes the memory back). Nothing else changes: atexit handlers,
finalizers and stream flushes run as always. This module imports nothing heavy itself, so the
imports it times are the command's.
"""

from __future__ import annotations

import gc
import sys
from typing import NoReturn


def run() -> NoReturn:
    """Entry point of the ``cryptota`` console script (see the module docstring)."""
    gc.disable()
    try:
        from cryptota_core.cli.common import import_command
        from cryptota_pipelines.cli import main

        import_command(sys.argv[1:])
    finally:
        gc.freeze()
        gc.enable()
    code = main()
    gc.freeze()
    sys.exit(code)
