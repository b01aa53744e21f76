"""Numba kernels of the fast engine and the sweep: NumPy arrays in, NumPy arrays out.

One module per job, each mirroring one piece of what backtrader does, in backtrader's order of
floating-point operations so results are bit-identical:

* :mod:`.exact` — CPython's ``math.fsum`` (backtrader seeds and sums indicators with it);
* :mod:`.indicators` — ``RSI(period, safediv=True)`` and ``SMA(period)``;
* :mod:`.signals` — entry/exit signals of the rule-based strategies (RSI levels, RSI divergence
  pivots);
* :mod:`.broker` — ``BackBroker`` fills, cash and valuation, and the long-only market-order
  simulation shared by ``rsi``, ``rsi_ma`` and ``rsi_divergence``;
* :mod:`.grid` — the grid bot's order book: limit orders, re-centring, cancellations, rejections;
* :mod:`.figures` — streaming performance figures (no equity curve kept) for the sweep;
* :mod:`.sweep` — the parallel sweep kernels over many parameter sets.
* :mod:`.cscv` — the combinatorially symmetric cross-validation behind PBO, over block sums.

Records have named fields: orders and fills are structured arrays (``ORDER_DT``, ``FILL_DT`` in
:mod:`.broker`), a sweep set's accumulators an ``ACC_DT`` record (:mod:`.figures`); state that
lives only inside a loop is a NamedTuple. These modules import nothing else of ours (an
import-linter contract keeps it so): a strategy spec declares its kernel from them
(:mod:`cryptota_core.strategies.kernel`) without depending on the engines.
"""
