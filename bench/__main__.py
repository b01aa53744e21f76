"""``python -m bench [NAME ...]``: run the benchmarks and print one table (NAME: a key of
:data:`SUITES`; ``sweep-e2e`` is the end-to-end half of ``sweep``)."""

from __future__ import annotations

import platform
import sys

from rich.console import Console
from rich.table import Table

from bench import bench_backfill, bench_backtest, bench_ingest, bench_store, bench_sweep
from bench.common import Row

SUITES = {
    "store": bench_store.run,
    "ingest": bench_ingest.run,
    "backtest": bench_backtest.run,
    "backfill": bench_backfill.run,
    "sweep": bench_sweep.run,
    "sweep-e2e": bench_sweep.run_e2e,
}
DEFAULT = [name for name in SUITES if name != "sweep-e2e"]
"""What ``python -m bench`` runs: ``sweep`` already includes its end-to-end pair, which
``sweep-e2e`` runs alone (to re-measure it quickly)."""


def main(argv: list[str]) -> int:
    names = argv or DEFAULT
    rows: list[Row] = []
    for name in names:
        rows += SUITES[name]()
    table = Table(
        title=f"CryptoTA benchmarks ({platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()})"
    )
    columns = ["group", "case", "implementation", "items", "seconds", "rate"]
    if any(row.note for row in rows):
        columns.append("note")
    for column in columns:
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
            *([row.note] if "note" in columns else []),
        )
    Console(width=220 if "note" in columns else 140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
