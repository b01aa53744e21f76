"""A load killed half-way leaves nothing of that call in the store (one transaction per call)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd

from cryptota_core.storage.candle_store import CandleStore
from tests.core.storage.test_candle_store import BTC, START, make_candles

YEAR_OF_1M = 525_600

LOADER = textwrap.dedent(
    """
    import sys
    from cryptota_core.storage.candle_store import CandleStore
    from tests.core.storage.test_candle_store import BTC, START, make_candles

    frame = make_candles(START, int(sys.argv[2]))
    store = CandleStore.from_url(sys.argv[1])
    print("upserting", flush=True)
    store.upsert(BTC, frame)
    print("done", flush=True)
    """
)


def _kill_mid_load(url: str, rows: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", LOADER, url, str(rows)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "upserting"
    time.sleep(0.3)
    assert process.poll() is None, "the load finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_killed_load_leaves_no_partial_data(database_url: str) -> None:
    end = START + pd.Timedelta(days=366)
    CandleStore.from_url(database_url)  # schema exists before the loader starts
    _kill_mid_load(database_url, YEAR_OF_1M)
    store = CandleStore.from_url(database_url)
    deadline = time.monotonic() + 30
    while store.count(BTC, START, end) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.count(BTC, START, end) == 0
    frame = make_candles(START, YEAR_OF_1M)
    store.upsert(BTC, frame)
    store.upsert(BTC, frame)
    assert store.count(BTC, START, end) == YEAR_OF_1M
    pd.testing.assert_frame_equal(store.read(BTC, START, end), frame, check_exact=True)
