"""Ingestion from a source into the store: idempotence, validation, gaps, atomicity."""

from __future__ import annotations

import pandas as pd
import pytest

from cryptota_core.app.ingest import ingest, ingest_series, month_chunks
from cryptota_core.errors import DataError
from cryptota_core.market.frame import SeriesKey
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.storage.candle_store import CandleStore

JAN = pd.Timestamp("2024-01-01", tz="UTC")
FEB = pd.Timestamp("2024-02-01", tz="UTC")


class HoledSource:
    """A real source with an exchange outage: candles of one hour are missing."""

    exchange = "synthetic"

    def __init__(self, hole: tuple[pd.Timestamp, pd.Timestamp]) -> None:
        self.inner = SyntheticSource(seed=3)
        self.hole = hole

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        now: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        frame = self.inner.fetch(symbol, interval, start, end, now=now)
        return frame[(frame.index < self.hole[0]) | (frame.index >= self.hole[1])]


class CorruptingSource(HoledSource):
    """Returns one candle whose high is below its low in the second month."""

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        now: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        frame = self.inner.fetch(symbol, interval, start, end, now=now).copy()
        if start >= FEB:
            frame.iloc[5, frame.columns.get_loc("high")] = frame["low"].iloc[5] / 2
        return frame


def test_month_chunks_split_at_utc_month_boundaries() -> None:
    chunks = list(
        month_chunks(pd.Timestamp("2024-01-15", tz="UTC"), pd.Timestamp("2024-03-02", tz="UTC"))
    )
    assert [(a.isoformat(), b.isoformat()) for a, b in chunks] == [
        ("2024-01-15T00:00:00+00:00", "2024-02-01T00:00:00+00:00"),
        ("2024-02-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00"),
        ("2024-03-01T00:00:00+00:00", "2024-03-02T00:00:00+00:00"),
    ]


def test_ingest_twice_is_idempotent(database_url: str) -> None:
    store = CandleStore.from_url(database_url)
    source = SyntheticSource(seed=1)
    first = ingest(store, source, ["BTCUSDT", "ETHUSDT"], "1m", JAN, JAN + pd.Timedelta(days=3))
    second = ingest(store, source, ["BTCUSDT", "ETHUSDT"], "1m", JAN, JAN + pd.Timedelta(days=3))
    assert [r.written for r in first] == [3 * 1440, 3 * 1440]
    assert [r.written for r in second] == [0, 0]
    for symbol in ("BTCUSDT", "ETHUSDT"):
        key = SeriesKey(exchange="synthetic", symbol=symbol, interval="1m")
        stored = store.read(key, JAN, JAN + pd.Timedelta(days=3))
        assert len(stored) == 3 * 1440
        expected = source.fetch(symbol, "1m", JAN, JAN + pd.Timedelta(days=3))
        pd.testing.assert_frame_equal(stored, expected, check_exact=True)


def test_gaps_are_recorded_not_filled(sqlite_url: str) -> None:
    hole = (JAN + pd.Timedelta(hours=5), JAN + pd.Timedelta(hours=6))
    store = CandleStore.from_url(sqlite_url)
    report = ingest_series(
        store, HoledSource(hole), "BTCUSDT", "1m", JAN, JAN + pd.Timedelta(days=1)
    )
    assert report.received == 1440 - 60
    assert report.expected == 1440
    assert report.gaps == [(hole[0], hole[1] - pd.Timedelta(minutes=1))]
    assert report.missing == 60
    key = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1m")
    assert store.count(key, JAN, JAN + pd.Timedelta(days=1)) == 1380


def test_invalid_chunk_is_refused_and_earlier_chunks_stay(database_url: str) -> None:
    store = CandleStore.from_url(database_url)
    source = CorruptingSource((JAN, JAN))
    with pytest.raises(
        DataError, match=r"failed validation: 1 candles violating low <= open/close <= high"
    ):
        ingest_series(store, source, "BTCUSDT", "1h", JAN, FEB + pd.Timedelta(days=10))
    key = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1h")
    assert store.count(key, JAN, FEB) == 31 * 24
    assert store.count(key, FEB, FEB + pd.Timedelta(days=10)) == 0


def test_candles_not_yet_closed_are_refused(sqlite_url: str) -> None:
    store = CandleStore.from_url(sqlite_url)
    now = JAN + pd.Timedelta(hours=12)
    source = SyntheticSource(seed=1)
    with pytest.raises(DataError, match="opening in the future or not yet closed"):
        ingest_series(
            store, _Unfiltered(source), "BTCUSDT", "1h", JAN, JAN + pd.Timedelta(days=1), now=now
        )


class _Unfiltered:
    """Passes through a source but pretends the clock is earlier than the data's end."""

    exchange = "synthetic"

    def __init__(self, inner: SyntheticSource) -> None:
        self.inner = inner

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        now: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        return self.inner.fetch(symbol, interval, start, end, now=now)


def test_auto_source_uses_binance_when_it_answers(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptota_core.app.ingest import open_source, resolve_source_name
    from cryptota_core.market.sources.synthetic import generate_candles
    from cryptota_core.settings import load_settings
    from tests.exchange.server import LocalExchange

    with LocalExchange(("BTCUSDT",), now="2024-01-03T00:00:00Z") as exchange:
        monkeypatch.setenv("BINANCE_BASE_URL", exchange.url)
        settings = load_settings()
        assert resolve_source_name("auto", settings) == "binance"
        store = CandleStore.from_url(sqlite_url)
        source = open_source("auto", settings)
        assert source.exchange == "binance"
        end = JAN + pd.Timedelta(days=1)
        report = ingest_series(store, source, "BTCUSDT", "1m", JAN, end)
    assert report.received == 1440
    key = SeriesKey(exchange="binance", symbol="BTCUSDT", interval="1m")
    expected = generate_candles("BTCUSDT", "1m", JAN, end, seed=42)
    pd.testing.assert_frame_equal(store.read(key, JAN, end), expected, check_exact=True)


def test_auto_source_falls_back_to_synthetic_loudly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from cryptota_core.app.ingest import open_source
    from cryptota_core.settings import load_settings
    from tests.services import free_port

    monkeypatch.setenv("BINANCE_BASE_URL", f"http://127.0.0.1:{free_port()}")
    with caplog.at_level("WARNING"):
        source = open_source("auto", load_settings())
    assert source.exchange == "synthetic"
    assert "SYNTHETIC" in caplog.text
