"""Parameter-sweep throughput: our sweep kernel against vectorbt and backtrader.

The task: a 1,000-set RSI grid — period range(6, 26, 2) × oversold range(10, 40, 3) ×
overbought range(61, 91, 3) — over one year of synthetic 1m candles (525,600 bars), each set
reduced to its headline figures (total return, Sharpe, Sortino, max drawdown, trades, win rate).
Throughput is bar·sets per second (bars × parameter sets ÷ wall seconds); the first call's numba
compilation is excluded (a warm-up call runs first; kernels are cached on disk anyway).

Each implementation runs in its own subprocess (``python -m bench.bench_sweep WORKER``), so the
peak RSS reported is its own and not what an earlier one left allocated:

* ``sweep``: :func:`cryptota_core.backtest.sweep.run_sweep` on the whole grid (best of 3), on
  all cores; and a 10,000-set grid for memory (period range(4, 44, 2) × oversold range(10, 40,
  3) × overbought range(50, 100));
* ``vectorbt``: ``Portfolio.from_signals`` with the same fees, orders filled at the next bar's
  open (signals shifted one bar, ``price=open``), 95 % of cash per entry, then the same figures
  from its accessors. It needs bars × sets arrays (signals, then prices, values, returns:
  ~70 bytes per bar·set), so it runs a 100-set sample (every 10th set, all periods) in chunks
  of 50 and is extrapolated to the grid; "signals only" times ``from_signals`` alone;
* ``backtrader``: our backtrader engine (:func:`run_backtest`, full metrics) on a sample of 2
  sets over the first month, extrapolated; ``fast engine``: :func:`run_fast_backtest` set by set
  on 10 sets over the year, extrapolated.

The machine is shared: each worker reports the 1-minute load average before it started, so a
number taken on a busy machine can be recognised and re-measured.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bench.common import Row

GRID_1K = {
    "period": list(range(6, 26, 2)),
    "oversold": list(range(10, 40, 3)),
    "overbought": list(range(61, 91, 3)),
}
GRID_10K = {
    "period": list(range(4, 44, 2)),
    "oversold": list(range(10, 40, 3)),
    "overbought": list(range(50, 100)),
}
FEES = 0.001
CASH = 10_000.0
STAKE = 0.95
VECTORBT_SAMPLE = 100
VECTORBT_CHUNK = 50
TARGET_RATE = 500e6
"""The sweep's target on a 2-core machine, bar·sets per second."""

GROUP = "sweep: 1,000 RSI sets × 1 year of 1m"


def _year() -> pd.DataFrame:
    from cryptota_core.market.sources.synthetic import generate_candles

    return generate_candles("BTCUSDT", "1m", "2023-01-01", "2024-01-01", seed=42)


def _grid(grid: dict[str, list[int]]) -> list[Any]:
    from cryptota_core.strategies import get_strategy

    return list(get_strategy("rsi").expand_grid(grid))


# ----------------------------------------------------------------------------------- workers
def _sweep(grid: dict[str, list[int]], repeat: int) -> dict[str, Any]:
    from cryptota_core.backtest.sweep import run_sweep

    frame = _year()
    sets = _grid(grid)
    run_sweep(frame.iloc[:20_000], "rsi", sets[:16], interval="1m")  # warm-up (load kernels)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = run_sweep(frame, "rsi", sets, interval="1m", commission=FEES, stake=STAKE)
        best = min(best, time.perf_counter() - start)
    assert len(result.figures) == len(sets)
    return {"sets": len(sets), "bars": len(frame), "seconds": best, "measured_sets": len(sets)}


def _sweep_1k() -> dict[str, Any]:
    return _sweep(GRID_1K, repeat=3)


def _sweep_10k() -> dict[str, Any]:
    return _sweep(GRID_10K, repeat=1)


def _vectorbt_run(frame: pd.DataFrame, params: list[Any], figures: bool) -> tuple[float, float]:
    """Seconds of from_signals (and of the figures) for ``params`` on ``frame``."""
    import vectorbt as vbt

    from cryptota_core.kernels.indicators import rsi_nb

    close = frame["close"].to_numpy()
    index = frame.index
    rsi = {p: rsi_nb(close, p) for p in sorted({int(m.period) for m in params})}
    start = time.perf_counter()
    table = np.column_stack([rsi[int(m.period)] for m in params])
    entries = np.zeros(table.shape, dtype=bool)
    exits = np.zeros(table.shape, dtype=bool)
    # a signal on bar t's close is an order on bar t+1, filled at that bar's open
    entries[1:] = table[:-1] < np.array([float(m.oversold) for m in params])
    exits[1:] = table[:-1] > np.array([float(m.overbought) for m in params])
    portfolio = vbt.Portfolio.from_signals(
        pd.Series(close, index=index),
        pd.DataFrame(entries, index=index),
        pd.DataFrame(exits, index=index),
        price=pd.Series(frame["open"].to_numpy(), index=index),
        fees=FEES,
        size=STAKE,
        size_type="percent",
        init_cash=CASH,
        freq="1min",
    )
    signals = time.perf_counter() - start
    if figures:
        portfolio.total_return()
        portfolio.sharpe_ratio()
        portfolio.sortino_ratio()
        portfolio.max_drawdown()
        portfolio.trades.count()
        portfolio.trades.win_rate()
    return signals, time.perf_counter() - start


def _vectorbt(figures: bool) -> dict[str, Any]:
    frame = _year()
    sets = _grid(GRID_1K)
    _vectorbt_run(frame.iloc[:2_000], sets[:2], figures=True)  # warm-up (numba compilation)
    sample = sets[:: len(sets) // VECTORBT_SAMPLE][:VECTORBT_SAMPLE]
    seconds = 0.0
    for i in range(0, len(sample), VECTORBT_CHUNK):
        signals, total = _vectorbt_run(frame, sample[i : i + VECTORBT_CHUNK], figures)
        seconds += total if figures else signals
    return {"sets": len(sets), "bars": len(frame), "seconds": seconds, "measured_sets": len(sample)}


def _vectorbt_figures() -> dict[str, Any]:
    return _vectorbt(figures=True)


def _vectorbt_signals() -> dict[str, Any]:
    return _vectorbt(figures=False)


def _backtrader() -> dict[str, Any]:
    from cryptota_core.backtest.engine import run_backtest

    frame = _year()
    month = frame.iloc[:43_200]
    sets = _grid(GRID_1K)
    sample = [sets[0], sets[len(sets) // 2]]
    start = time.perf_counter()
    for params in sample:
        run_backtest(month, "rsi", params, interval="1m", commission=FEES, stake=STAKE)
    seconds = time.perf_counter() - start
    return {"sets": len(sets), "bars": len(month), "seconds": seconds, "measured_sets": 2}


def _fast_engine() -> dict[str, Any]:
    from cryptota_core.backtest.fast import run_fast_backtest

    frame = _year()
    sets = _grid(GRID_1K)
    run_fast_backtest(frame.iloc[:5_000], "rsi", sets[0], interval="1m")  # warm-up
    sample = sets[:: len(sets) // 10][:10]
    start = time.perf_counter()
    for params in sample:
        run_fast_backtest(frame, "rsi", params, interval="1m", commission=FEES, stake=STAKE)
    seconds = time.perf_counter() - start
    return {"sets": len(sets), "bars": len(frame), "seconds": seconds, "measured_sets": 10}


WORKERS: dict[str, Callable[[], dict[str, Any]]] = {
    "sweep": _sweep_1k,
    "sweep-10k": _sweep_10k,
    "vectorbt": _vectorbt_figures,
    "vectorbt-signals": _vectorbt_signals,
    "fast": _fast_engine,
    "backtrader": _backtrader,
}
LABELS = {
    "sweep": ("1,000 sets", "cryptota run_sweep"),
    "sweep-10k": ("10,000 sets (memory)", "cryptota run_sweep"),
    "vectorbt": ("1,000 sets", "vectorbt from_signals + figures"),
    "vectorbt-signals": ("1,000 sets", "vectorbt from_signals only"),
    "fast": ("1,000 sets", "cryptota fast engine, set by set"),
    "backtrader": ("1,000 sets", "cryptota backtrader engine"),
}


def _in_subprocess(name: str) -> dict[str, Any] | None:
    """Run one worker in a fresh interpreter; its JSON line, or None when it could not run."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_sweep", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"bench sweep: {name} failed: {last}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(names: tuple[str, ...] = tuple(WORKERS)) -> list[Row]:
    """Every worker in its own process; one row each, rates extrapolated to the whole grid
    where a worker measured a sample (the note says so), ratios against the sweep."""
    results = {name: _in_subprocess(name) for name in names}
    rates: dict[str, float] = {}
    rows: list[Row] = []
    for name in names:
        result = results[name]
        case, implementation = LABELS[name]
        if result is None:
            rows.append(Row(GROUP, case, implementation, 0, 0.0, "bar·sets", "failed (see stderr)"))
            continue
        measured = result["bars"] * result["measured_sets"]
        rate = measured / result["seconds"]
        rates[name] = rate
        full = 525_600 * result["sets"]
        seconds = full / rate
        note = f"peak RSS {result['rss_mib']:,.0f} MiB; load {result['load']:.1f}"
        if result["measured_sets"] != result["sets"] or result["bars"] != 525_600:
            note += (
                f"; measured {result['measured_sets']} sets × {result['bars']:,} bars "
                f"in {result['seconds']:.1f} s, extrapolated"
            )
        rows.append(Row(GROUP, case, implementation, full, seconds, "bar·sets", note))
    ours = rates.get("sweep")
    if ours is not None:
        for row, name in zip(rows, names, strict=True):
            if name == "sweep":
                row.note += f"; target ≥ {TARGET_RATE / 1e6:,.0f}M/s"
            elif name in rates and name != "sweep-10k":
                row.note += f"; sweep is {ours / rates[name]:,.0f}× faster"
    return rows


def worker(name: str) -> int:
    """Run one worker here and print its result as one JSON line."""
    load = os.getloadavg()[0]
    result = WORKERS[name]()
    result["load"] = load
    result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1]))
