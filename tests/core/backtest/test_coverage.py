"""A window the store does not cover is refused, naming what is covered and the ingest command;
``allow_partial`` uses what is stored and says so; a few missing candles (recorded outages) are
within the tolerance."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from cryptota_core.app.candles import candles_from_store
from cryptota_core.backtest.coverage import COVERAGE_TOLERANCE, check_coverage, coverage
from cryptota_core.errors import NoDataError
from cryptota_core.market.frame import SeriesKey
from cryptota_core.market.sources.synthetic import generate_candles
from cryptota_core.storage.candle_store import CandleStore

JAN = pd.Timestamp("2024-01-01", tz="UTC")
FEB = pd.Timestamp("2024-02-01", tz="UTC")
JUL = pd.Timestamp("2024-07-01", tz="UTC")
KEY = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1m")


@pytest.fixture
def january(database_url: str) -> CandleStore:
    """A store holding January's 1m candles of BTCUSDT only."""
    store = CandleStore.from_url(database_url)
    store.upsert(KEY, generate_candles("BTCUSDT", "1m", JAN, FEB, seed=3))
    return store


def test_a_window_beyond_the_stored_candles_is_refused_naming_both(january: CandleStore) -> None:
    with pytest.raises(NoDataError) as refused:
        candles_from_store(january, "BTCUSDT", "1h", JAN, JUL)
    message = str(refused.value)
    assert message.startswith("BTCUSDT 1h (synthetic): the store has 744 of the 4,368 candles")
    assert "[2024-01-01T00:00Z, 2024-07-01T00:00Z)" in message
    assert "spanning [2024-01-01T00:00Z, 2024-02-01T00:00Z)" in message
    assert (
        "run `cryptota ingest --source synthetic --symbols BTCUSDT --start 2024-01-01 "
        "--end 2024-07-01` to fill it, or allow a partial window (--allow-partial)"
    ) in message
    assert "\n" not in message


def test_a_window_starting_before_the_stored_candles_is_refused(january: CandleStore) -> None:
    with pytest.raises(NoDataError, match="the store has 744 of the 1,488 candles"):
        candles_from_store(january, "BTCUSDT", "1h", JAN - pd.Timedelta(days=31), FEB)


def test_allow_partial_uses_what_is_stored_and_says_which_window(
    january: CandleStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cryptota_core.backtest.coverage"):
        candles = candles_from_store(january, "BTCUSDT", "1h", JAN, JUL, allow_partial=True)
    assert len(candles.frame) == 744
    assert "partial window allowed, using [2024-01-01T00:00Z, 2024-02-01T00:00Z)" in caplog.text


def test_the_covered_window_reads_without_a_word(
    january: CandleStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cryptota_core.backtest.coverage"):
        candles = candles_from_store(january, "BTCUSDT", "4h", JAN, FEB)
    assert len(candles.frame) == 31 * 6 and not caplog.text


def test_missing_candles_up_to_the_tolerance_are_accepted_beyond_it_refused() -> None:
    frame = generate_candles("BTCUSDT", "1m", JAN, FEB, seed=3)
    allowed = int(COVERAGE_TOLERANCE * len(frame))
    outage = frame.drop(frame.index[1000 : 1000 + allowed])  # a recorded exchange outage
    assert check_coverage(KEY, outage, JAN, FEB).missing == allowed
    longer = frame.drop(frame.index[1000 : 1000 + allowed + 1])
    with pytest.raises(NoDataError, match=f"the store has {len(longer):,} of the 44,640"):
        check_coverage(KEY, longer, JAN, FEB)


def test_only_complete_candles_of_the_window_are_expected() -> None:
    """A window ending mid-hour expects the hours that close inside it (the store returns only
    complete buckets), so it is covered by them."""
    hourly = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1h")
    frame = generate_candles("BTCUSDT", "1h", JAN, JAN + pd.Timedelta(hours=10), seed=3)
    found = coverage(hourly, frame, JAN, JAN + pd.Timedelta(hours=10, minutes=30))
    assert (found.expected, found.stored, found.missing) == (10, 10, 0)
