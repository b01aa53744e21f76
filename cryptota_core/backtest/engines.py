"""The two engines by name, for the callers that choose one at run time (a backtest's
``--engine``, an optimisation's re-check): ``fast`` (numba) or ``backtrader`` (the reference).
The backtrader engine is imported only when it is chosen, because importing backtrader costs a
fifth of a second that a sweep or a fast run never needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptota_core.backtest.fast import run_fast_backtest
from cryptota_core.backtest.result import BacktestResult
from cryptota_core.errors import InvalidInputError

ENGINES = ("fast", "backtrader")
"""The numba engine (the four built-in strategies; identical results, 60-260x faster) and
backtrader (every strategy, the reference)."""

Runner = Callable[..., BacktestResult]
"""``run_backtest`` or ``run_fast_backtest``: (candles, strategy, params, *, interval, cash,
commission, slippage, stake) → :class:`BacktestResult`."""


def engine_runner(engine: str) -> Runner:
    """The run function of ``engine`` (one of :data:`ENGINES`)."""
    if engine == "fast":
        return run_fast_backtest
    if engine == "backtrader":
        from cryptota_core.backtest.engine import run_backtest

        runner: Callable[..., Any] = run_backtest
        return runner
    raise InvalidInputError(f"unknown engine {engine!r}: use {' or '.join(ENGINES)}")
