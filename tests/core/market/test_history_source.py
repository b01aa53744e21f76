"""HistorySource: archive files for what they cover, the REST API (local exchange) for the rest,
combined into one exact, deduplicated candle frame."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from cryptota_core.market.sources.archive import ArchiveSource
from cryptota_core.market.sources.base import CandleSource
from cryptota_core.market.sources.binance import BinanceSource
from cryptota_core.market.sources.history import HistorySource, file_period, uncovered
from cryptota_core.market.sources.synthetic import generate_candles
from tests.core.market.archive_fixture import write_archive
from tests.exchange.server import LocalExchange

NOW = pd.Timestamp("2024-02-05T12:00:30Z")
KLINES = "/api/v3/klines"


def ts(value: str) -> pd.Timestamp:
    return pd.Timestamp(value, tz="UTC")


@pytest.fixture
def exchange() -> Iterator[LocalExchange]:
    with LocalExchange(now=NOW) as running:
        yield running


def history(root: Path, exchange: LocalExchange) -> HistorySource:
    archive = ArchiveSource(root.resolve().as_uri())
    return HistorySource(archive, BinanceSource(exchange.url, backoff_base=0.01))


def write(root: Path, interval: str, monthly: list[str], daily: list[str]) -> None:
    frame = generate_candles("BTCUSDT", interval, "2024-01-01", "2024-02-06", 42, now=NOW)
    write_archive(root, frame, "BTCUSDT", interval, monthly=monthly, daily=daily)


def test_satisfies_the_candle_source_protocol(tmp_path: Path, exchange: LocalExchange) -> None:
    source = history(tmp_path, exchange)
    assert isinstance(source, CandleSource)
    assert source.exchange == "binance"


def test_archive_months_and_days_then_rest_for_what_is_missing(
    tmp_path: Path, exchange: LocalExchange
) -> None:
    # January monthly, Feb 1-2 daily; Feb 3 is missing and Feb 4-5 are not published yet.
    write(tmp_path, "1h", monthly=["2024-01"], daily=["2024-02-01", "2024-02-02"])
    frame = history(tmp_path, exchange).fetch(
        "BTCUSDT", "1h", ts("2024-01-30"), ts("2024-02-06"), now=NOW
    )

    pd.testing.assert_frame_equal(
        frame, generate_candles("BTCUSDT", "1h", "2024-01-30", "2024-02-06", 42, now=NOW)
    )
    assert frame.index[-1] == ts("2024-02-05T11:00"), "only closed candles"
    pages = [r for r in exchange.requests if r.path == KLINES]
    assert len(pages) == 1, "one REST span: Feb 3 to now"
    assert int(pages[0].params["startTime"]) == ts("2024-02-03").value // 1_000_000


def test_a_day_missing_between_archive_files_comes_from_rest(
    tmp_path: Path, exchange: LocalExchange
) -> None:
    write(tmp_path, "5m", monthly=[], daily=["2024-02-01", "2024-02-03"])
    frame = history(tmp_path, exchange).fetch(
        "BTCUSDT", "5m", ts("2024-02-01"), ts("2024-02-04"), now=NOW
    )
    pd.testing.assert_frame_equal(
        frame, generate_candles("BTCUSDT", "5m", "2024-02-01", "2024-02-04", 42, now=NOW)
    )
    spans = [
        (int(r.params["startTime"]), int(r.params["endTime"]))
        for r in exchange.requests
        if r.path == KLINES
    ]
    day = ts("2024-02-02").value // 1_000_000
    assert spans == [(day, day + 86_400_000 - 1)]


def test_a_fully_archived_window_makes_no_rest_request(
    tmp_path: Path, exchange: LocalExchange
) -> None:
    write(tmp_path, "1h", monthly=["2024-01"], daily=[])
    frame = history(tmp_path, exchange).fetch(
        "BTCUSDT", "1h", ts("2024-01-10"), ts("2024-01-20"), now=NOW
    )
    assert len(frame) == 240
    assert exchange.count() == 0


def test_an_empty_archive_falls_back_to_rest_entirely(
    tmp_path: Path, exchange: LocalExchange
) -> None:
    frame = history(tmp_path, exchange).fetch(
        "BTCUSDT", "1h", ts("2024-01-01"), ts("2024-01-03"), now=NOW
    )
    pd.testing.assert_frame_equal(
        frame, generate_candles("BTCUSDT", "1h", "2024-01-01", "2024-01-03", 42, now=NOW)
    )


def test_archive_gaps_stay_gaps(tmp_path: Path, exchange: LocalExchange) -> None:
    # A real outage inside an archived day is not "missing from the archive".
    frame = generate_candles("BTCUSDT", "1h", "2024-02-01", "2024-02-02", 42, now=NOW)
    holed = frame.drop(frame.index[5:8])
    write_archive(tmp_path, holed, "BTCUSDT", "1h", monthly=[], daily=["2024-02-01"])
    got = history(tmp_path, exchange).fetch(
        "BTCUSDT", "1h", ts("2024-02-01"), ts("2024-02-02"), now=NOW
    )
    pd.testing.assert_frame_equal(got, holed)
    assert exchange.count(KLINES) == 0


def test_a_delisted_symbol_keeps_its_archive_history(
    tmp_path: Path, exchange: LocalExchange
) -> None:
    exchange.set_status("BTCUSDT", "BREAK")
    write(tmp_path, "1h", monthly=["2024-01"], daily=[])
    frame = history(tmp_path, exchange).fetch(
        "BTCUSDT", "1h", ts("2024-01-30"), ts("2024-02-03"), now=NOW
    )
    assert frame.index[0] == ts("2024-01-30") and frame.index[-1] == ts("2024-01-31T23:00")
    assert exchange.count(KLINES) == 0
    assert exchange.count("/api/v3/exchangeInfo") == 1


def test_file_period_and_uncovered_spans() -> None:
    assert file_period("BTCUSDT-1m-2024-02.zip") == (ts("2024-02-01"), ts("2024-03-01"))
    assert file_period("BTCUSDT-1m-2024-02-29.zip") == (ts("2024-02-29"), ts("2024-03-01"))
    covered = [(ts("2024-01-01"), ts("2024-02-01")), (ts("2024-02-02"), ts("2024-02-03"))]
    assert uncovered(ts("2023-12-31"), ts("2024-02-05"), covered) == [
        (ts("2023-12-31"), ts("2024-01-01")),
        (ts("2024-02-01"), ts("2024-02-02")),
        (ts("2024-02-03"), ts("2024-02-05")),
    ]
    assert uncovered(ts("2024-01-05"), ts("2024-01-06"), covered) == []
