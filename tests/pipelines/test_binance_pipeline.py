"""The pipeline on the Binance source (the local stand-in): a run killed half-way and re-run
stores exactly the exchange's candles, and API keys never reach logs, metadata or errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from cryptota_core.market.frame import SeriesKey
from cryptota_core.market.sources.synthetic import generate_candles
from cryptota_core.settings import load_settings
from cryptota_core.storage.candle_store import CandleStore
from tests.exchange.server import TEST_API_KEY, TEST_API_SECRET, LocalExchange
from tests.pipelines.conftest import SYMBOLS

START = pd.Timestamp("2024-01-01", tz="UTC")
END = pd.Timestamp("2024-01-31", tz="UTC")  # 30 days
RUN_RANGE = """
from datetime import date

from dagster import DagsterInstance, materialize

from cryptota_core.settings import load_settings
from cryptota_pipelines.definitions import build_defs
from cryptota_pipelines.partitions import range_tags

defs = build_defs(load_settings())
result = materialize(
    [*defs.assets, *defs.asset_checks],
    instance=DagsterInstance.get(),
    resources=defs.resources,
    selection=["candles_1m"],
    tags=range_tags(date(2024, 1, 1), date(2024, 1, 30), ["BTCUSDT", "ETHUSDT"]),
)
raise SystemExit(0 if result.success else 1)
"""
"""One run over 30 days x 2 symbols, as a daemon-launched backfill run executes it."""


@pytest.fixture
def exchange() -> Iterator[LocalExchange]:
    with LocalExchange(SYMBOLS, now="2024-03-01T00:00:00Z") as running:
        yield running


@pytest.fixture
def pipeline_env(
    exchange: LocalExchange, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Production-shaped environment: Binance source, PostgreSQL store, a persistent instance
    that knows the symbols, and API keys set (they must never show up anywhere)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        "CRYPTOTA_SOURCE": "binance",
        "BINANCE_BASE_URL": exchange.url,
        "BINANCE_API_KEY": TEST_API_KEY,
        "BINANCE_API_SECRET": TEST_API_SECRET,
        "CRYPTOTA_DATABASE_URL": postgres_url,
        "CRYPTOTA_SYMBOLS": ",".join(SYMBOLS),
        "DAGSTER_HOME": str(home),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    DagsterInstance.get().add_dynamic_partitions("symbols", SYMBOLS)
    return env


def _stored(url: str, symbol: str) -> pd.DataFrame:
    store = CandleStore.from_url(url)
    try:
        return store.read(SeriesKey(exchange="binance", symbol=symbol, interval="1m"), START, END)
    finally:
        store.engine.dispose()


def _run_range_in_subprocess(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_RANGE],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_killed_run_then_rerun_stores_exactly_the_exchange_candles(
    pipeline_env: dict[str, str], postgres_url: str
) -> None:
    expected = {s: generate_candles(s, "1m", START, END, seed=42) for s in SYMBOLS}
    first = _run_range_in_subprocess(pipeline_env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        if len(_stored(postgres_url, "BTCUSDT")):
            break
        time.sleep(0.05)
    assert first.poll() is None, "the run finished before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    partial = {s: len(_stored(postgres_url, s)) for s in SYMBOLS}
    assert partial["BTCUSDT"] > 0
    assert partial["ETHUSDT"] < len(expected["ETHUSDT"]), "killed too late to test anything"
    # Whatever was stored is whole: a series is written in one transaction per month.
    assert partial["BTCUSDT"] in (0, len(expected["BTCUSDT"]))

    second = _run_range_in_subprocess(pipeline_env)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output.decode()[-3000:]
    for symbol in SYMBOLS:
        pd.testing.assert_frame_equal(
            _stored(postgres_url, symbol), expected[symbol], check_exact=True
        )
    text = output.decode()
    assert TEST_API_KEY not in text and TEST_API_SECRET not in text


def test_api_keys_never_reach_metadata_logs_or_errors(
    pipeline_env: dict[str, str], exchange: LocalExchange
) -> None:
    from cryptota_pipelines.definitions import build_defs

    defs = build_defs(load_settings())
    instance = DagsterInstance.get()
    assets = [*(defs.assets or []), *(defs.asset_checks or [])]
    result = materialize(
        assets,  # type: ignore[arg-type]
        instance=instance,
        resources=defs.resources,
        selection=["candles_1m"],
        partition_key="2024-01-02|BTCUSDT",
    )
    assert result.success
    # A symbol the exchange does not list: a user error, failed at once (no retries), whose
    # message must name the symbol and nothing secret.
    instance.add_dynamic_partitions("symbols", ["SOLUSDT"])
    failed = materialize(
        assets,  # type: ignore[arg-type]
        instance=instance,
        resources=defs.resources,
        selection=["candles_1m"],
        partition_key="2024-01-03|SOLUSDT",
        raise_on_error=False,
    )
    assert not failed.success
    failure = failed.get_step_failure_events()[0].event_specific_data.error  # type: ignore[union-attr]
    assert "SOLUSDT" in str(failure.message)
    records = [
        repr(record) for run in instance.get_runs() for record in instance.all_logs(run.run_id)
    ]
    assert len(records) > 20
    everything = "\n".join(records)
    assert "2024-01-02" in everything  # the metadata and logs are really in there
    assert TEST_API_KEY not in everything
    assert TEST_API_SECRET not in everything
