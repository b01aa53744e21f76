"""``python -m bench [NAME ...]``: run the benchmarks and print one table."""

from __future__ import annotations

import platform
import sys

from rich.console import Console
from rich.table import Table

from bench import bench_backfill, bench_backtest, bench_ingest, bench_store
from bench.common import Row

SUITES = {
    "store": bench_store.run,
    "ingest": bench_ingest.run,
    "backtest": bench_backtest.run,
    "backfill": bench_backfill.run,
}


def main(argv: list[str]) -> int:
    names = argv or list(SUITES)
    rows: list[Row] = []
    for name in names:
        rows += SUITES[name]()
    table = Table(
        title=f"CryptoTA benchmarks ({platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()})"
    )
    for column in ("group", "case", "implementation", "items", "seconds", "rate"):
        table.add_column(
            column, justify="right" if column in ("items", "seconds", "rate") else "left"
        )
    for row in rows:
        table.add_row(
            row.group,
            row.case,
            row.ours_or_peer,
            f"{row.items:,}",
            f"{row.seconds:.3f}",
            f"{row.rate:,.0f} {row.unit}/s",
        )
    Console(width=140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
