"""The input checks every engine shares: strategy, broker settings and candles.

The backtrader engine, the fast engine, the sweep and walk-forward all take the same three
inputs from the same callers (CLI, pipeline, notebook). Checking them here, once, means every
engine refuses the same input with the same line, and accepts the same frames in the same
shape, so a run cannot pass on one engine and fail, or silently differ, on another.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cryptota_core.broker import BrokerSettings
from cryptota_core.errors import InvalidInputError
from cryptota_core.strategies import Strategy, StrategyParams, get_strategy

__all__ = [
    "PRICE_COLUMNS",
    "check_length",
    "check_settings",
    "prepare_candles",
    "resolve_strategy",
]

log = logging.getLogger(__name__)

PRICE_COLUMNS = ("open", "high", "low", "close")
"""The columns every engine simulates on; a candle frame without one of them is refused."""


def resolve_strategy(strategy: str | Strategy | type[Strategy]) -> Strategy:
    """The spec behind a registry name, a spec class or a spec, so callers may pass whichever
    they hold; anything else is refused with one line rather than failing deep in an engine."""
    if isinstance(strategy, str):
        return get_strategy(strategy)
    if isinstance(strategy, type) and issubclass(strategy, Strategy):
        return strategy()
    if isinstance(strategy, Strategy):
        return strategy
    raise InvalidInputError(f"strategy must be a name or a Strategy, got {strategy!r}")


def check_settings(*, cash: float, commission: float, slippage: float, stake: float) -> None:
    """Refuse out-of-range broker settings with one line. The bounds live in one place,
    :class:`~cryptota_core.broker.BrokerSettings`, which the CLI and the ad-hoc job
    also validate with before reading candles; the engines check again for direct callers."""
    BrokerSettings(cash=cash, commission=commission, slippage=slippage, stake=stake)


def prepare_candles(candles: pd.DataFrame) -> pd.DataFrame:
    """The price columns indexed by a sorted, unique UTC ``open_time``. Unsorted input is sorted
    with a warning (safe to fix); duplicates and missing or non-positive prices are the caller's
    to fix, so they raise."""
    frame = candles.set_index("open_time") if "open_time" in candles.columns else candles
    if len(frame) == 0:
        raise InvalidInputError("no candles to backtest; load a window that holds some")
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"candles lack columns {missing}; pass a candle frame with open/high/low/close"
        )
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise InvalidInputError("candles must be indexed by open_time (a DatetimeIndex)")
    index = frame.index
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    out = pd.DataFrame(
        {c: frame[c].to_numpy(dtype="float64") for c in PRICE_COLUMNS},
        index=index.as_unit("ns").rename("open_time"),
    )
    out["volume"] = frame["volume"].to_numpy(dtype="float64") if "volume" in frame.columns else 0.0
    if not out.index.is_monotonic_increasing:
        log.warning("candles were not in time order; sorted them")
        out = out.sort_index(kind="stable")
    if out.index.has_duplicates:
        first = out.index[out.index.duplicated()][0]
        raise InvalidInputError(
            f"two candles share open_time {first.isoformat()}; normalise the frame first"
        )
    prices = out[list(PRICE_COLUMNS)].to_numpy()
    if not (np.isfinite(prices).all() and (prices > 0).all()):
        raise InvalidInputError("candles hold missing, infinite or non-positive prices; fix them")
    return out


def check_length(spec: Strategy, model: StrategyParams, frame: pd.DataFrame) -> int:
    """The warm-up of ``model``, after checking ``frame`` against it. A series that ends before
    the first bar that may signal is refused with one line by both engines (backtrader itself
    fails on a series no longer than an indicator's period); one that leaves no fill bar after
    the first signal bar is legitimate (a truncated window) but cannot trade, which is logged."""
    warmup = spec.warmup(model)
    if len(frame) <= warmup:
        raise InvalidInputError(
            f"{len(frame)} candles are too few for {spec.slug(model)}: its indicators are "
            f"defined from candle {warmup + 1} on, and trading needs {warmup + 2}; load a "
            "longer window"
        )
    if len(frame) < warmup + 2:
        log.warning(
            "%s: %d candles cannot trade (warm-up %d, then a signal bar and a fill bar)",
            spec.slug(model),
            len(frame),
            warmup,
        )
    return warmup
