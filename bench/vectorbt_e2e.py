"""vectorbt end to end, as one process: ``python -m bench.vectorbt_e2e CSV GRID_JSON``.

The peer of ``cryptota optimize --csv CSV --strategy rsi --grid GRID_JSON --json`` in the sweep
benchmark's end-to-end rows (:func:`bench.bench_sweep.run_e2e`), which times this process from
outside, from spawn to exit. So that the wall time is vectorbt's and nothing else's, this module
imports nothing of cryptota (``bench/__init__.py`` is a docstring): it does the whole job the way
a vectorbt user would.

* read the Binance kline CSV with ``pd.read_csv`` (12 columns, no header), index from
  ``open_time`` in ms;
* RSI per distinct period with vectorbt's own ``vbt.RSI``. Our RSI is Wilder's (smoothing
  1/period); vectorbt's ``ewm=True`` smooths with span ``window`` (2/(window + 1)), so
  ``window = 2·period − 1`` is Wilder's smoothing (its warm-up differs for the first bars);
  vectorbt's default ``ewm=False`` would be a different, rolling-mean RSI at the same cost;
* signals are levels on the bar that just closed (RSI < oversold enters, > overbought exits),
  the order is on the next bar, filled at its open (signals shifted one bar, ``price=open``);
* ``Portfolio.from_signals`` with fees 0.001, 95 % of cash per entry, 10,000 of cash, over every
  set, in chunks of :data:`CHUNK` columns: vectorbt keeps bars × sets arrays (signals, prices,
  values, returns, ~70 bytes per bar·set), and 1,000 sets × 525,600 bars at once would need
  ~37 GB;
* the same figures as the sweep (total return, Sharpe, Sortino, max drawdown, trades, win rate),
  then the best set by Sharpe among sets with at least :data:`MIN_TRADES` closed trades, as
  ``cryptota optimize``'s default ``--min-trades`` ranks.

It prints one JSON line: the grid's size, the bars, the best set, its phases' seconds and its
peak RSS.
"""

from __future__ import annotations

import itertools
import json
import resource
import sys
import time
from typing import Any

KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base",
    "taker_buy_quote",
    "ignore",
)
FEES = 0.001
CASH = 10_000.0
STAKE = 0.95
CHUNK = 50
MIN_TRADES = 5
FIGURES = ("total_return", "sharpe_ratio", "sortino_ratio", "max_drawdown", "trades", "win_rate")


def expand(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The grid's sets in grid order, skipping oversold >= overbought as cryptota does."""
    keys = list(grid)
    sets = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
    return [s for s in sets if float(s["oversold"]) < float(s["overbought"])]


def main(argv: list[str]) -> int:
    csv_path, grid_json = argv
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd
    import vectorbt as vbt

    phases["import"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    frame = pd.read_csv(csv_path, header=None, names=list(KLINE_COLUMNS))
    index = pd.DatetimeIndex(pd.to_datetime(frame["open_time"], unit="ms", utc=True))
    close = pd.Series(frame["close"].to_numpy(dtype="float64"), index=index)
    open_ = pd.Series(frame["open"].to_numpy(dtype="float64"), index=index)
    phases["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sets = expand(json.loads(grid_json))
    periods = sorted({int(s["period"]) for s in sets})
    indicator = vbt.RSI.run(close, window=[2 * p - 1 for p in periods], ewm=True)
    rsi = indicator.rsi.to_numpy().reshape(len(close), -1)  # one period: a Series
    column_of = {p: i for i, p in enumerate(periods)}
    phases["rsi"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    figures: dict[str, list[float]] = {name: [] for name in FIGURES}
    for i in range(0, len(sets), CHUNK):
        chunk = sets[i : i + CHUNK]
        table = rsi[:, [column_of[int(s["period"])] for s in chunk]]
        entries = np.zeros(table.shape, dtype=bool)
        exits = np.zeros(table.shape, dtype=bool)
        # a signal on bar t's close is an order on bar t+1, filled at that bar's open
        entries[1:] = table[:-1] < np.array([float(s["oversold"]) for s in chunk])
        exits[1:] = table[:-1] > np.array([float(s["overbought"]) for s in chunk])
        portfolio = vbt.Portfolio.from_signals(
            close,
            pd.DataFrame(entries, index=index),
            pd.DataFrame(exits, index=index),
            price=open_,
            fees=FEES,
            size=STAKE,
            size_type="percent",
            init_cash=CASH,
            freq="1min",
        )
        figures["total_return"] += list(portfolio.total_return().to_numpy())
        figures["sharpe_ratio"] += list(portfolio.sharpe_ratio().to_numpy())
        figures["sortino_ratio"] += list(portfolio.sortino_ratio().to_numpy())
        figures["max_drawdown"] += list(portfolio.max_drawdown().to_numpy())
        figures["trades"] += list(portfolio.trades.count().to_numpy())
        figures["win_rate"] += list(portfolio.trades.win_rate().to_numpy())
        del portfolio, entries, exits, table
    phases["portfolio"] = time.perf_counter() - t0

    sharpe = np.array(figures["sharpe_ratio"], dtype="float64")
    eligible = np.isfinite(sharpe) & (np.array(figures["trades"]) >= MIN_TRADES)
    best = int(np.argmax(np.where(eligible, sharpe, -np.inf))) if eligible.any() else None
    print(
        json.dumps(
            {
                "sets": len(sets),
                "bars": len(close),
                "best": None
                if best is None
                else {
                    "params": sets[best],
                    **{name: float(figures[name][best]) for name in FIGURES},
                },
                "phases": phases,
                "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
