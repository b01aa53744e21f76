"""End-to-end ingestion: Binance REST (the local stand-in, in its own process) → PostgreSQL.

30 days × 2 symbols of 1m candles. Ours: ``ingest`` with ``BinanceSource`` (paging, weight
budget, validation, one transaction per month, binary COPY). The peer: what a hand-rolled
service does with python-binance's own ``get_historical_klines`` into ``DataFrame.to_sql``.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pandas as pd
from binance.client import Client
from sqlalchemy import text

from bench.common import Row, timed
from cryptota_core.app.ingest import ingest
from cryptota_core.market.sources.binance import BinanceSource
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.database import create_store_engine
from tests.services import free_port, start_postgres

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
START = pd.Timestamp("2024-01-01", tz="UTC")
END = pd.Timestamp("2024-01-31", tz="UTC")
KLINE_NAMES = [
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
    "trades", "taker_buy_base", "taker_buy_quote", "ignore",
]  # fmt: skip


def _start_exchange() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.exchange", "--port", str(port),
         "--symbols", ",".join(SYMBOLS), "--now", "2024-03-01T00:00:00Z"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/v3/ping", timeout=1).read()
            return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the local exchange did not start")


def _peer(url: str, db_url: str) -> int:
    client = Client(ping=False)
    client.API_URL = f"{url}/api"
    engine = create_store_engine(db_url)
    rows = 0
    for symbol in SYMBOLS:
        klines = client.get_historical_klines(
            symbol, "1m", int(START.value // 1_000_000), int(END.value // 1_000_000) - 1
        )
        frame = pd.DataFrame(klines, columns=KLINE_NAMES).drop(columns=["ignore", "close_time"])
        frame["open_time"] = pd.to_datetime(frame["open_time"], unit="ms", utc=True)
        frame.insert(0, "symbol", symbol)
        frame.to_sql("klines_pandas", engine, if_exists="append", index=False, chunksize=10_000)
        rows += len(frame)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE klines_pandas"))
    engine.dispose()
    return rows


def run() -> list[Row]:
    exchange, url = _start_exchange()
    server = start_postgres()
    try:
        store = CandleStore.from_url(server.url)
        source = BinanceSource(url)

        def ours() -> int:
            reports = ingest(store, source, SYMBOLS, "1m", START, END)
            return sum(r.received for r in reports)

        seconds, candles = timed(ours)
        expected = len(SYMBOLS) * 30 * 1440
        assert candles == expected, f"ingested {candles}, expected {expected}"
        peer_seconds, peer_rows = timed(lambda: _peer(url, server.url))
        return [
            Row("ingest: local Binance → PostgreSQL", "30 days × 2 symbols of 1m",
                "cryptota BinanceSource + upsert", candles, seconds),
            Row("ingest: local Binance → PostgreSQL", "30 days × 2 symbols of 1m",
                "python-binance get_historical_klines + to_sql", peer_rows, peer_seconds),
        ]  # fmt: skip
    finally:
        server.stop()
        exchange.terminate()
        exchange.wait(timeout=10)
