"""A kernel-backed strategy is one module: a spec that declares a :class:`SignalKernel` runs on
the fast engine and sweeps on numba, with nothing else edited.

The strategy here (``sma_band``: long while the close is above its SMA by a band) exists only
in this module: the fixture registers it for one test and unregisters it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import backtrader as bt
import numba
import numpy as np
import pytest
from pydantic import Field

from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.fast import run_fast_backtest, supports
from cryptota_core.backtest.sweep import OBJECTIVES, run_sweep
from cryptota_core.errors import InvalidInputError
from cryptota_core.kernels.indicators import sma_nb
from cryptota_core.strategies import (
    LongOnlyStrategy,
    Strategy,
    StrategyParams,
    get_strategy,
    register,
    unregister,
)
from cryptota_core.strategies.kernel import Prices, SignalKernel
from tests.core.backtest.candles_fixture import make_candles
from tests.core.backtest.parity import assert_same_result
from tests.core.backtest.test_sweep import assert_sweep_matches_fast_engine

NAME = "sma_band"


class SmaBandParams(StrategyParams):
    """Enter when the close is above SMA(``period``) × (1 + ``band_pct`` / 100); exit when it is
    back below the SMA."""

    period: int = Field(20, ge=2, le=500)
    band_pct: float = Field(0.5, ge=0, le=20)


class SmaBandBt(LongOnlyStrategy):
    def __init__(self) -> None:
        super().__init__()
        self.cfg: SmaBandParams = self.p.spec_params
        self.sma = bt.indicators.SMA(self.data.close, period=self.cfg.period)

    def should_enter_long(self) -> bool:
        return bool(self.data.close[0] > self.sma[0] * (1.0 + self.cfg.band_pct / 100.0))

    def should_exit_long(self) -> bool:
        return bool(self.data.close[0] < self.sma[0])


@numba.njit
def band_signals_nb(
    close: np.ndarray, sma: np.ndarray, band_pct: float
) -> tuple[np.ndarray, np.ndarray]:
    """The backtrader rules bar by bar, in the same floating-point order (NaN compares False)."""
    n = close.shape[0]
    entry = np.zeros(n, dtype=np.bool_)
    exit_ = np.zeros(n, dtype=np.bool_)
    for t in range(n):
        entry[t] = close[t] > sma[t] * (1.0 + band_pct / 100.0)
        exit_[t] = close[t] < sma[t]
    return entry, exit_


class SmaBandKernel(SignalKernel):
    def signals(self, params: StrategyParams, prices: Prices) -> tuple[np.ndarray, np.ndarray]:
        assert isinstance(params, SmaBandParams)
        sma = sma_nb(prices.close, params.period)
        return band_signals_nb(prices.close, sma, params.band_pct)


class SmaBand(Strategy):
    name: ClassVar[str] = NAME
    params_model: ClassVar[type[StrategyParams]] = SmaBandParams
    default_grid: ClassVar[dict[str, list[Any]]] = {"period": [10, 20], "band_pct": [0.0, 0.5]}
    slug_abbrev: ClassVar[dict[str, str]] = {"period": "p", "band_pct": "b"}
    bt_class = SmaBandBt
    kernel = SmaBandKernel()

    def warmup(self, params: StrategyParams) -> int:
        assert isinstance(params, SmaBandParams)
        return params.period - 1  # SMA(n) is first defined on bar n - 1


@pytest.fixture
def sma_band() -> Iterator[Strategy]:
    """The strategy registered for one test only."""
    register(SmaBand)
    try:
        yield get_strategy(NAME)
    finally:
        unregister(NAME)
    with pytest.raises(InvalidInputError, match="unknown strategy 'sma_band'"):
        get_strategy(NAME)


GRID = {"period": [5, 12, 30], "band_pct": [0.0, 0.2, 1.0]}


def test_a_strategy_declaring_a_kernel_runs_on_the_fast_engine(sma_band: Strategy) -> None:
    """Bit for bit the backtrader engine's result, as for the built-ins."""
    candles = make_candles(400, seed=5)
    assert supports(sma_band)
    for params in ({"period": 5, "band_pct": 0.0}, {"period": 12, "band_pct": 0.2}):
        oracle = run_backtest(candles, NAME, params, interval="1h", slippage=0.001)
        fast = run_fast_backtest(candles, NAME, params, interval="1h", slippage=0.001)
        assert len(oracle.trades) > 2
        assert_same_result(oracle, fast)


def test_a_strategy_declaring_a_kernel_sweeps_on_numba(sma_band: Strategy) -> None:
    """The sweep runs the kernel (not backtrader); every set's figures are the fast engine's,
    so the best set by each objective is the best of the set-by-set fast runs."""
    candles = make_candles(1500, seed=8)
    sets = sma_band.expand_grid(GRID)
    result = run_sweep(candles, NAME, sets, interval="1h", n_blocks=4)
    assert result.engine == "fast"
    assert_sweep_matches_fast_engine(candles, result, "1h", {})
    runs = [run_fast_backtest(candles, NAME, p, interval="1h") for p in sets]
    assert len({r.metrics["trade_count"] for r in runs}) > 1, "the sets must differ"
    for objective in ("sharpe_ratio", "total_return", "max_drawdown"):
        values = [runs[i].metrics[OBJECTIVES[objective]] for i in range(len(sets))]
        best = max(range(len(sets)), key=lambda i: -np.inf if values[i] is None else values[i])
        assert result.rank(objective, top=1) == [runs[best].slug], objective


def test_a_subclass_does_not_inherit_the_kernel(sma_band: Strategy) -> None:
    """A subclass may change the rules; it must declare its own kernel to run fast."""

    class Renamed(SmaBand):
        name: ClassVar[str] = "sma_band_renamed"

    assert sma_band.fast_kernel() is SmaBand.kernel
    assert Renamed().fast_kernel() is None and not supports(Renamed())
