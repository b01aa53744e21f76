"""Parameter-sweep throughput: our sweep kernel against vectorbt and backtrader, and the whole
``cryptota optimize`` command against vectorbt end to end.

The task: a 1,000-set RSI grid — period range(6, 26, 2) × oversold range(10, 40, 3) ×
overbought range(61, 91, 3) — over one year of synthetic 1m candles (525,600 bars), each set
reduced to its headline figures (total return, Sharpe, Sortino, max drawdown, trades, win rate).
Throughput is bar·sets per second (bars × parameter sets ÷ wall seconds).

End to end (:func:`run_e2e`, ``python -m bench sweep-e2e``): what a user waits for, from a
Binance kline CSV on disk to the best set, each as a whole process timed from outside (spawn to
exit), with the child's own peak RSS (``os.wait4``):

* ``cryptota optimize --csv CSV --strategy rsi --grid GRID --json`` with default flags (so it
  also re-checks the winner set by set and computes PSR/DSR/PBO), the console script of the
  runtime-only venv ``make bench`` builds (:data:`RUNTIME_VENV`), run once untimed to fill
  numba's on-disk cache, then best of 3; the JSON must parse and hold the 1,000 sets. The same
  command on a 2-set grid is the process overhead (imports, CSV read, loading cached kernels);
* :mod:`bench.vectorbt_e2e`: vectorbt doing the same job (``pd.read_csv``, ``vbt.RSI``,
  ``Portfolio.from_signals`` over all 1,000 sets in chunks of 50, the same figures, best by
  Sharpe), measured once after a 2,000-bar × 2-set run of the same script warmed its numba cache.

Kernel level (:func:`run_kernels`): each implementation in its own subprocess (``python -m
bench.bench_sweep WORKER``), in process, candles already in memory, numba compilation excluded
(a warm-up call runs first), so the peak RSS reported is its own:

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
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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
TARGET_RATE = 1e9
"""The sweep kernel's target on a 2-core machine, bar·sets per second."""
E2E_TARGET_RATIO = 100.0
"""``cryptota optimize`` end to end against vectorbt end to end: at least this many times faster."""
E2E_TARGET_OVERHEAD = 1.0
"""Seconds of process overhead (a 2-set search of the same CSV) ``cryptota optimize`` may take."""
GRID_OVERHEAD = {"period": [14], "oversold": [30], "overbought": [70, 75]}
"""Two sets: the command's fixed cost (imports, CSV read, cached kernels) with next to no search."""
WARMUP_BARS = 2_000

GROUP = "sweep kernel, in process: 1,000 RSI sets × 1 year of 1m"
E2E_GROUP = "end to end, whole process: kline CSV → best set, 1 year of 1m"


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
    "sweep": ("1,000 sets", "cryptota run_sweep (kernel)"),
    "sweep-10k": ("10,000 sets (memory)", "cryptota run_sweep (kernel)"),
    "vectorbt": ("1,000 sets", "vectorbt from_signals + figures (kernel level)"),
    "vectorbt-signals": ("1,000 sets", "vectorbt from_signals only (kernel level)"),
    "fast": ("1,000 sets", "cryptota fast engine, set by set (kernel level)"),
    "backtrader": ("1,000 sets", "cryptota backtrader engine (kernel level)"),
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


def run_kernels(names: tuple[str, ...] = tuple(WORKERS)) -> list[Row]:
    """Every kernel-level worker in its own process; one row each, rates extrapolated to the
    whole grid where a worker measured a sample (the note says so), ratios against the sweep."""
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


def run() -> list[Row]:
    """``python -m bench sweep``: the kernel-level rows, then the end-to-end pair."""
    return run_kernels() + run_e2e()


# -------------------------------------------------------------------------------- end to end
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Finished:
    """One child process, timed from outside: wall seconds from spawn to exit, the child's own
    peak RSS (its rusage, not the sum over every child this process ever waited for), output."""

    seconds: float
    rss_mib: float
    returncode: int
    stdout: str
    stderr: str

    def failure(self) -> str:
        """Why it failed, in one line: the last line of its stderr."""
        return (self.stderr.strip().splitlines() or [f"exit {self.returncode}"])[-1]


@dataclass(frozen=True)
class Fixture:
    """The files both end-to-end peers read: a year of 1m as a Binance kline CSV, its first
    :data:`WARMUP_BARS` bars (for vectorbt's warm-up), and the children's environment."""

    csv: Path
    bars: int
    warmup_csv: Path
    directory: Path
    env: dict[str, str]


@contextmanager
def _fixture() -> Iterator[Fixture]:
    """Write the CSVs once per bench run into a temporary directory (removed afterwards).

    The children run there with ``CRYPTOTA_HOME`` inside it and no other ``CRYPTOTA_*``
    variable, so ``cryptota optimize`` sees its default settings whatever the caller's shell
    exports; this repository leads ``PYTHONPATH``, so they run the code this bench was started
    from (not another checkout an editable install points at)."""
    from cryptota_core.market.binance_csv import write_kline_csv

    with tempfile.TemporaryDirectory(prefix="cryptota-bench-e2e-") as name:
        directory = Path(name)
        frame = _year()
        csv = directory / "BTCUSDT-1m-2023.csv"
        warmup_csv = directory / "BTCUSDT-1m-warmup.csv"
        write_kline_csv(frame, csv, interval="1m")
        write_kline_csv(frame.iloc[:WARMUP_BARS], warmup_csv, interval="1m")
        home = directory / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOTA_")}
        env["CRYPTOTA_HOME"] = str(home)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        )
        yield Fixture(csv, len(frame), warmup_csv, directory, env)


def _whole_process(argv: list[str], fixture: Fixture) -> Finished:
    """Run ``argv`` to its end; ``os.wait4`` gives this child's own rusage. Output goes to
    files, not pipes, so a child that writes much cannot block while we wait."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=fixture.directory,
            env=fixture.env,
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait
        out.seek(0)
        err.seek(0)
        return Finished(
            seconds,
            usage.ru_maxrss / 1024,  # KiB on Linux
            child.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


RUNTIME_VENV = REPO / ".venv-runtime"
"""The project as ``pip install`` gives it to a user, without the dev and bench extras (``make
bench`` builds it): those extras bring scipy, which numba imports at start-up for its BLAS check
(0.1 s a user never pays)."""


def _cryptota() -> tuple[Path, str]:
    """The ``cryptota`` console script to time, and which install it is: the runtime-only venv's
    when it exists, else this interpreter's (then scipy is there)."""
    runtime = RUNTIME_VENV / "bin" / "cryptota"
    if runtime.exists():
        return runtime, "runtime-only venv (pip install -e ., as a user installs it)"
    return Path(sys.executable).with_name("cryptota"), "this venv (dev extras: scipy present)"


def _optimize(fixture: Fixture, grid: dict[str, list[int]]) -> Finished:
    """``cryptota optimize`` on the year's CSV, default flags but ``--json``: the console script
    a user runs (:func:`_cryptota`)."""
    argv = [str(_cryptota()[0]), "optimize", "--csv", str(fixture.csv)]
    argv += ["--strategy", "rsi", "--grid", json.dumps(grid), "--json"]
    return _whole_process(argv, fixture)


def _vectorbt_e2e(fixture: Fixture, csv: Path, grid: dict[str, list[int]]) -> Finished:
    """:mod:`bench.vectorbt_e2e` on ``csv``: vectorbt's whole job in a process of its own."""
    argv = [sys.executable, "-m", "bench.vectorbt_e2e", str(csv), json.dumps(grid)]
    return _whole_process(argv, fixture)


def _checked(done: Finished, sets: int, bars: int) -> dict[str, Any] | str:
    """The child's JSON when it ran the whole search (``sets`` sets over ``bars`` bars); else
    why not, so a row that did less work than it claims fails instead of looking fast."""
    if done.returncode != 0:
        return done.failure()
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as e:
        return f"no JSON on stdout ({e})"
    found = (result.get("combinations", result.get("sets")), result.get("bars"))
    if found != (sets, bars):
        return f"ran {found[0]} sets × {found[1]} bars, expected {sets} × {bars}"
    return result


def _params(params: dict[str, Any] | None) -> str:
    """A set as p14-os30-ob75, comparable across both peers (floats and ints alike)."""
    if not params:
        return "none"
    return "p{:g}-os{:g}-ob{:g}".format(
        *(float(params[k]) for k in ("period", "oversold", "overbought"))
    )


def _progress(message: str) -> None:
    print(f"bench sweep-e2e: {message}", file=sys.stderr, flush=True)


def run_e2e() -> list[Row]:
    """``python -m bench sweep-e2e``: ``cryptota optimize`` (default flags) against vectorbt,
    both from the same kline CSV to the best set, as whole processes; the ratio is measured.

    Ours: one untimed run (fills numba's on-disk cache, as any second use of the command
    finds it), then best of 3; the overhead is the same command on a 2-set grid, best of 3.
    vectorbt's full run takes minutes, so it runs once, after the same script on 2,000 bars × 2
    sets has warmed its numba cache (its first use compiles for tens of seconds)."""
    sets = len(_grid(GRID_1K))
    overhead_sets = len(_grid(GRID_OVERHEAD))
    failed = "failed (see stderr)"
    case = f"{sets:,} sets"
    with _fixture() as fixture:
        bars = fixture.bars
        full_items, overhead_items = bars * sets, bars * overhead_sets
        load_ours = os.getloadavg()[0]
        _progress("cryptota optimize: 1 untimed run, 3 timed, 3 of the 2-set overhead")
        warm = _optimize(fixture, GRID_1K)
        ours = [_optimize(fixture, GRID_1K) for _ in range(3)]
        overhead = [_optimize(fixture, GRID_OVERHEAD) for _ in range(3)]
        load_vbt = os.getloadavg()[0]
        _progress("vectorbt: warm-up on 2,000 bars × 2 sets, then the 1,000 sets once (minutes)")
        vbt_warm = _vectorbt_e2e(fixture, fixture.warmup_csv, GRID_OVERHEAD)
        vbt = _vectorbt_e2e(fixture, fixture.csv, GRID_1K)

    rows: list[Row] = []
    ours_checked = [_checked(done, sets, bars) for done in (warm, *ours)]
    overhead_checked = [_checked(done, overhead_sets, bars) for done in overhead]
    vbt_checked = _checked(vbt, sets, bars)
    bad = [c for c in (*ours_checked, *overhead_checked, vbt_checked) if isinstance(c, str)]
    for reason in bad:
        print(f"bench sweep-e2e: failed: {reason}", file=sys.stderr)

    ours_ok = not any(isinstance(c, str) for c in ours_checked)
    overhead_ok = not any(isinstance(c, str) for c in overhead_checked)
    best_ours = min(ours, key=lambda d: d.seconds)
    best_overhead = min(overhead, key=lambda d: d.seconds)
    ours_label = "cryptota optimize, default flags (whole process)"
    vbt_label = "vectorbt end to end (whole process)"
    if ours_ok:
        winner = ours_checked[-1]
        assert isinstance(winner, dict)
        note = (
            f"best of 3 ({', '.join(f'{d.seconds:.2f}' for d in ours)} s) after an untimed run "
            f"({warm.seconds:.2f} s, fills numba's cache); peak RSS {best_ours.rss_mib:,.0f} MiB; "
            f"load {load_ours:.1f}; {_cryptota()[1]}; best set "
            f"{_params(winner['best']['params'])}"
        )
        if not isinstance(vbt_checked, str):
            ratio = vbt.seconds / best_ours.seconds
            note += (
                f"; {ratio:,.0f}× faster than vectorbt end to end "
                f"(target ≥ {E2E_TARGET_RATIO:,.0f}×)"
            )
        else:
            note += "; no ratio: vectorbt end to end failed"
        if overhead_ok:
            note += f"; overhead {best_overhead.seconds:.2f} s (target ≤ {E2E_TARGET_OVERHEAD:g} s)"
        rows.append(
            Row(E2E_GROUP, case, ours_label, full_items, best_ours.seconds, "bar·sets", note)
        )
    else:
        rows.append(Row(E2E_GROUP, case, ours_label, 0, 0.0, "bar·sets", failed))
    if overhead_ok:
        rows.append(
            Row(
                E2E_GROUP,
                f"{overhead_sets} sets: process overhead",
                ours_label,
                overhead_items,
                best_overhead.seconds,
                "bar·sets",
                f"imports, CSV read, loading cached kernels, {overhead_sets} sets; best of 3 "
                f"({', '.join(f'{d.seconds:.2f}' for d in overhead)} s); peak RSS "
                f"{best_overhead.rss_mib:,.0f} MiB; target ≤ {E2E_TARGET_OVERHEAD:g} s",
            )
        )
    else:
        rows.append(Row(E2E_GROUP, "process overhead", ours_label, 0, 0.0, "bar·sets", failed))
    if isinstance(vbt_checked, str):
        rows.append(Row(E2E_GROUP, case, vbt_label, 0, 0.0, "bar·sets", failed))
    else:
        phases = vbt_checked["phases"]
        warmed = (
            f"numba cache warmed first by a {WARMUP_BARS:,}-bar × {overhead_sets}-set run "
            f"({vbt_warm.seconds:.1f} s)"
            if vbt_warm.returncode == 0
            else f"warm-up run failed ({vbt_warm.failure()}): cache may be cold"
        )
        best_vbt = vbt_checked["best"]
        rows.append(
            Row(
                E2E_GROUP,
                case,
                vbt_label,
                full_items,
                vbt.seconds,
                "bar·sets",
                f"one run; {warmed}; import {phases['import']:.1f} s, read_csv "
                f"{phases['read']:.1f} s, vbt.RSI {phases['rsi']:.1f} s, from_signals + "
                f"figures in chunks of 50 {phases['portfolio']:.1f} s; peak RSS "
                f"{vbt.rss_mib:,.0f} MiB; load {load_vbt:.1f}; best set "
                f"{_params(best_vbt['params'] if best_vbt else None)}",
            )
        )
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
