"""A strategy's kernel: how the fast engine and the sweep run it, declared on its spec.

A spec that sets ``kernel`` (see :attr:`~cryptota_core.strategies.base.Strategy.kernel`) runs on
the fast engine (:func:`~cryptota_core.backtest.fast.run_fast_backtest`) and sweeps on numba
(:func:`~cryptota_core.backtest.sweep.run_sweep`); the engines ask the kernel and never branch
on the strategy. A spec without one runs on backtrader only. Two shapes:

* :class:`SignalKernel` — a long-only strategy (a ``LongOnlyStrategy`` on backtrader) answers
  :meth:`SignalKernel.signals`: entry and exit booleans per bar from the prices. The shared
  long-only simulation (:func:`~cryptota_core.kernels.broker.simulate_long_nb`) and
  sweep (:func:`~cryptota_core.kernels.sweep.signal_sweep_nb`) do the rest; a kernel
  may override :meth:`StrategyKernel.sweep` with a faster one (``rsi`` shares indicator rows);
* any other :class:`StrategyKernel` simulates itself (``grid``'s order book).

The kernel must reproduce the backtrader implementation bit for bit: the parity tests hold
every kernel-backed strategy to it. Kernels take NumPy arrays, the validated parameters and
the :class:`~cryptota_core.broker.BrokerSettings`; besides those settings they import
only :mod:`cryptota_core.kernels` (numba, which imports nothing else of ours), so a
strategy module declares one without depending on the engines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numba
import numpy as np

from cryptota_core.broker import BrokerSettings
from cryptota_core.kernels.broker import (
    FILL_DT,
    STATUS_FILLED,
    STATUS_REJECTED,
    Prices,
    simulate_long_nb,
)
from cryptota_core.kernels.figures import ACC_DT
from cryptota_core.kernels.sweep import balanced_order, signal_sweep_nb

if TYPE_CHECKING:
    from cryptota_core.strategies.base import StrategyParams

__all__ = [
    "TABLE_BYTES",
    "Prices",
    "SignalKernel",
    "Simulation",
    "StrategyKernel",
    "SweepRows",
    "allocate_rows",
    "batches",
    "distinct_rows",
    "indicator_table",
    "long_costs",
    "store_rows",
]

TABLE_BYTES = 512 * 2**20
"""Most memory the per-bar rows of one batch of sets may take (indicator rows of 8 bytes per
bar, signal rows of 1); a grid needing more runs in several batches."""


class Simulation(NamedTuple):
    """One set's full run: value and position at every close, every order
    (:data:`~cryptota_core.kernels.broker.ORDER_DT`) in placement order, every fill
    (:data:`~cryptota_core.kernels.broker.FILL_DT`) in notification order, and how
    many orders the broker rejected."""

    equity: np.ndarray
    position: np.ndarray
    orders: np.ndarray
    fills: np.ndarray
    rejected: int


class SweepRows(NamedTuple):
    """Many sets' streamed figures: one
    :data:`~cryptota_core.kernels.figures.ACC_DT` record per set, and per set and
    block the sum and the sum of squares of the per-bar returns (``edges`` as the sweep's)."""

    acc: np.ndarray
    block_sum: np.ndarray
    block_sumsq: np.ndarray


class StrategyKernel(ABC):
    """The fast engine's and the sweep's way into one strategy (stateless; one per spec)."""

    @abstractmethod
    def simulate(
        self, params: StrategyParams, prices: Prices, warmup: int, broker: BrokerSettings
    ) -> Simulation:
        """The full run of one parameter set, exactly as backtrader runs it."""

    @abstractmethod
    def sweep(
        self,
        params: Sequence[StrategyParams],
        prices: Prices,
        warmups: np.ndarray,
        edges: np.ndarray,
        broker: BrokerSettings,
    ) -> SweepRows:
        """The figures of many sets (row ``i`` for ``params[i]``), each equal to what
        :meth:`simulate`'s run of it gives (see :mod:`cryptota_core.backtest.sweep`)."""


class SignalKernel(StrategyKernel):
    """A long-only signal strategy: :meth:`signals` is all a subclass must write."""

    @abstractmethod
    def signals(self, params: StrategyParams, prices: Prices) -> tuple[np.ndarray, np.ndarray]:
        """Entry and exit booleans on every bar, read after the bar closed (bars before the
        warm-up are ignored; NaN indicator values compare False, as in backtrader)."""

    def simulate(
        self, params: StrategyParams, prices: Prices, warmup: int, broker: BrokerSettings
    ) -> Simulation:
        entry, exit_ = self.signals(params, prices)
        equity, position, orders = simulate_long_nb(
            *prices,
            entry,
            exit_,
            int(warmup),
            float(broker.cash),
            float(broker.commission),
            float(broker.slippage),
            float(broker.stake),
        )
        filled = orders[orders["status"] == STATUS_FILLED]
        fills = np.empty(filled.shape[0], dtype=FILL_DT)
        fills["bar"] = filled["fill_bar"]
        fills["size"] = np.where(filled["side"] > 0, filled["size"], -filled["size"])
        fills["price"] = filled["fill_price"]
        fills["commission"] = filled["commission"]
        rejected = int(np.count_nonzero(orders["status"] == STATUS_REJECTED))
        return Simulation(equity, position, orders, fills, rejected)

    def sweep(
        self,
        params: Sequence[StrategyParams],
        prices: Prices,
        warmups: np.ndarray,
        edges: np.ndarray,
        broker: BrokerSettings,
    ) -> SweepRows:
        """Every set's signals, then the long-only simulation of each set in parallel, in
        batches whose signal rows fit :data:`TABLE_BYTES`."""
        bars = prices.close.shape[0]
        rows = allocate_rows(len(params), edges.shape[0] - 1)
        per_batch = max(1, TABLE_BYTES // (2 * bars))
        for start in range(0, len(params), per_batch):
            batch = list(range(start, min(len(params), start + per_batch)))
            entry = np.empty((len(batch), bars), dtype=np.bool_)
            exit_ = np.empty((len(batch), bars), dtype=np.bool_)
            for row, i in enumerate(batch):
                entry[row], exit_[row] = self.signals(params[i], prices)
            got = signal_sweep_nb(
                *prices,
                entry,
                exit_,
                warmups[batch],
                edges,
                *long_costs(broker),
                balanced_order(len(batch), numba.get_num_threads()),
            )
            store_rows(rows, batch, got)
        return rows


# --------------------------------------------------------------- helpers for sweep entries
def long_costs(broker: BrokerSettings) -> tuple[float, float, float, float]:
    """``(cash, commission, slippage, stake)`` as the long-only sweep kernels take them."""
    return (
        float(broker.cash),
        float(broker.commission),
        float(broker.slippage),
        float(broker.stake),
    )


def allocate_rows(n_sets: int, n_blocks: int) -> SweepRows:
    """Rows to fill batch by batch (see :func:`store_rows`)."""
    return SweepRows(
        np.empty(n_sets, dtype=ACC_DT), np.zeros((n_sets, n_blocks)), np.zeros((n_sets, n_blocks))
    )


def store_rows(
    rows: SweepRows, batch: list[int], got: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    """One batch's kernel output (row ``r`` for set ``batch[r]``) into the whole sweep's."""
    rows.acc[batch], rows.block_sum[batch], rows.block_sumsq[batch] = got


def batches(keys: Sequence[tuple[int, ...]], rows_per_batch: int) -> list[list[int]]:
    """Set indices sorted by their indicator keys (one int per indicator, e.g. (period,
    ma_period)), cut into batches whose distinct indicator rows fit ``rows_per_batch``."""
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    out: list[list[int]] = []
    current: list[int] = []
    seen: list[set[int]] = [set() for _ in keys[0]]
    for i in order:
        rows = sum(len(s | {k}) for s, k in zip(seen, keys[i], strict=True))
        if current and rows > rows_per_batch:
            out.append(current)
            current = []
            seen = [set() for _ in keys[0]]
        current.append(i)
        for s, k in zip(seen, keys[i], strict=True):
            s.add(k)
    out.append(current)
    return out


def distinct_rows(values: list[int]) -> tuple[list[int], np.ndarray]:
    """Distinct values (sorted) and each value's row among them."""
    distinct = sorted(set(values))
    where = {v: r for r, v in enumerate(distinct)}
    return distinct, np.array([where[v] for v in values], dtype=np.int64)


def indicator_table(
    close: np.ndarray, periods: list[int], kernel: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """One indicator row per period (RSI or SMA computed once each, rows in parallel)."""
    return kernel(close, np.array(periods, dtype=np.int64))
