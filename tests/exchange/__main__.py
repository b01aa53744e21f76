"""Run the local Binance-compatible exchange by hand.

    python -m tests.exchange --port 8765 --symbols BTCUSDT,ETHUSDT
    BINANCE_BASE_URL=http://127.0.0.1:8765 cryptota ingest --source binance ...

Signed routes accept ``tests.exchange.server.TEST_API_KEY``/``TEST_API_SECRET`` (test-only
credentials of this stand-in, never real ones).
"""

from __future__ import annotations

import argparse
import logging
import threading

from tests.exchange.server import LocalExchange


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.exchange", description="A local Binance-compatible spot exchange."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT", help="comma-separated, TRADING")
    parser.add_argument("--seed", type=int, default=42, help="seed of the synthetic market")
    parser.add_argument("--weight-limit", type=int, default=6000, help="request weight per window")
    parser.add_argument("--window-seconds", type=float, default=60.0, help="weight window length")
    parser.add_argument("--now", default=None, help="pin the market clock (ISO-8601 UTC)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    exchange = LocalExchange(
        [s.strip().upper() for s in args.symbols.split(",") if s.strip()],
        seed=args.seed,
        host=args.host,
        port=args.port,
        weight_limit=args.weight_limit,
        window_seconds=args.window_seconds,
        now=args.now,
    ).start()
    print(f"local Binance exchange on {exchange.url} (seed {exchange.seed}); Ctrl-C stops it")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        exchange.stop()


if __name__ == "__main__":
    main()
