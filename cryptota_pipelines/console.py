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

It also gives OpenBLAS one thread (unless ``OPENBLAS_NUM_THREADS`` is set already): the heavy
work runs in numba kernels on every core, and numpy's BLAS only ever gets vector products of a
curve (a trend fit, an autocorrelation), for which its threads just wait for the cores numba's
OpenMP threads still hold after a kernel: ~0.1 s of an optimisation of a year of 1m.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import NoReturn


def run() -> NoReturn:
    """Entry point of the ``cryptota`` console script (see the module docstring)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # read when numpy loads OpenBLAS
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
