"""The synthetic market: deterministic, window-independent, continuous and realistic enough that
strategies meet volatility clusters, fat tails and an intraday rhythm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptota_core.errors import InvalidInputError
from cryptota_core.market.frame import CANDLE_COLUMNS, validate_candles
from cryptota_core.market.intervals import interval_timedelta
from cryptota_core.market.sources.base import CandleSource
from cryptota_core.market.sources.synthetic import ORIGIN, SyntheticSource, generate_candles

NOW = pd.Timestamp("2026-01-01", tz="UTC")
JAN_START = pd.Timestamp("2024-01-01", tz="UTC")
JAN_END = pd.Timestamp("2024-02-01", tz="UTC")

AGGREGATION = {
    "open": "first",
    "high": "max",
    "low": "min",
    "close": "last",
    "volume": "sum",
    "quote_volume": "sum",
    "trades": "sum",
    "taker_buy_base": "sum",
    "taker_buy_quote": "sum",
}


@pytest.fixture(scope="module")
def btc_january() -> pd.DataFrame:
    return generate_candles("BTCUSDT", "1m", JAN_START, JAN_END, 42, now=NOW)


def test_source_satisfies_candle_source_protocol() -> None:
    source = SyntheticSource(seed=3)
    assert isinstance(source, CandleSource)
    assert source.exchange == "synthetic"


def test_same_seed_same_candles_other_seed_other_candles(btc_january: pd.DataFrame) -> None:
    again = SyntheticSource(42).fetch("BTCUSDT", "1m", JAN_START, JAN_END, now=NOW)
    pd.testing.assert_frame_equal(again, btc_january, check_exact=True)
    other = generate_candles("BTCUSDT", "1m", JAN_START, JAN_END, 43, now=NOW)
    assert not np.allclose(other["close"].to_numpy(), btc_january["close"].to_numpy())


def test_overlapping_windows_give_identical_candles(btc_january: pd.DataFrame) -> None:
    day = generate_candles("BTCUSDT", "1m", "2024-01-15", "2024-01-16", 42, now=NOW)
    assert len(day) == 1440
    pd.testing.assert_frame_equal(
        day, btc_january.loc["2024-01-15 00:00":"2024-01-15 23:59"], check_exact=True
    )
    odd = generate_candles("BTCUSDT", "1m", "2024-01-31 23:17:30", "2024-02-01 00:05", 42, now=NOW)
    assert odd.index[0] == pd.Timestamp("2024-01-31 23:18", tz="UTC")
    pd.testing.assert_frame_equal(
        odd.loc[:"2024-01-31 23:59"], btc_january.loc["2024-01-31 23:18":], check_exact=True
    )


def test_window_independence_holds_across_a_year_and_for_hours() -> None:
    year = generate_candles("ETHUSDT", "1h", "2023-01-01", "2024-01-01", 42, now=NOW)
    week = generate_candles("ETHUSDT", "1h", "2023-06-05 13:00", "2023-06-12", 42, now=NOW)
    pd.testing.assert_frame_equal(week, year.loc[week.index[0] : week.index[-1]], check_exact=True)


def test_a_later_end_never_changes_earlier_candles() -> None:
    # The day-level process is built in blocks of days up to the window's end; a window ending
    # two blocks later must still see the same past.
    short = generate_candles("BTCUSDT", "1d", "2022-07-01", "2022-07-03", 42, now=NOW)
    long = generate_candles("BTCUSDT", "1d", "2022-07-01", "2025-07-01", 42, now=NOW)
    pd.testing.assert_frame_equal(short, long.iloc[:2], check_exact=True)


def test_open_equals_previous_close_across_days_and_windows(btc_january: pd.DataFrame) -> None:
    assert (btc_january["open"].to_numpy()[1:] == btc_january["close"].to_numpy()[:-1]).all()
    before = generate_candles("BTCUSDT", "1h", "2024-01-10", "2024-01-11", 42, now=NOW)
    after = generate_candles("BTCUSDT", "1h", "2024-01-11", "2024-01-12", 42, now=NOW)
    assert after["open"].iloc[0] == before["close"].iloc[-1]


def test_candles_are_valid_complete_and_consistent(btc_january: pd.DataFrame) -> None:
    report = validate_candles(btc_january, "1m", start=JAN_START, end=JAN_END, now=NOW)
    assert report.ok, report.problems()
    assert report.gaps == []
    assert report.rows == report.expected_rows == 31 * 1440
    assert list(btc_january.columns) == list(CANDLE_COLUMNS)
    assert btc_january["trades"].dtype == np.int64
    o, h, lo, c, v = (btc_january[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    assert (lo <= np.minimum(o, c)).all()
    assert (np.maximum(o, c) <= h).all()
    assert (lo > 0).all()
    assert (v > 0).all()
    assert (btc_january["trades"] >= 1).all()
    assert (btc_january["taker_buy_base"] <= btc_january["volume"]).all()
    assert (btc_january["taker_buy_base"] >= 0).all()
    assert (btc_january["taker_buy_quote"] <= btc_january["quote_volume"]).all()
    # quote volume is volume x a price inside the candle
    assert (btc_january["quote_volume"] >= v * lo * (1 - 1e-12)).all()
    assert (btc_january["quote_volume"] <= v * h * (1 + 1e-12)).all()
    # some candles must actually move: wicks beyond the body
    assert (h > np.maximum(o, c)).mean() > 0.5


def test_volatility_clusters_but_returns_are_not_predictable(btc_january: pd.DataFrame) -> None:
    returns = np.log(btc_january["close"]).diff().dropna()
    assert abs(returns.autocorr(1)) < 0.03
    assert returns.abs().autocorr(1) > 0.15  # about 0.08 without the intraday GARCH
    assert returns.abs().autocorr(30) > 0.05
    assert returns.kurt() > 1.0  # fat tails


def test_volume_has_an_intraday_rhythm(btc_january: pd.DataFrame) -> None:
    by_hour = btc_january["volume"].groupby(pd.DatetimeIndex(btc_january.index).hour).mean()
    assert by_hour.loc[13:17].mean() > 1.3 * by_hour.loc[1:5].mean()


def test_annualised_volatility_is_plausible(btc_january: pd.DataFrame) -> None:
    returns = np.log(btc_january["close"]).diff().dropna()
    assert 0.2 < returns.std() * np.sqrt(525_600) < 1.5


@pytest.mark.parametrize("interval", ["5m", "15m", "1h", "4h", "1d"])
def test_longer_intervals_are_the_resampled_1m_candles(
    btc_january: pd.DataFrame, interval: str
) -> None:
    coarse = generate_candles("BTCUSDT", interval, JAN_START, JAN_END, 42, now=NOW)
    expected = btc_january.resample(interval_timedelta(interval)).agg(AGGREGATION)
    assert coarse.index.equals(expected.index)
    for column in ("open", "high", "low", "close", "trades"):
        np.testing.assert_array_equal(coarse[column].to_numpy(), expected[column].to_numpy())
    for column in ("volume", "quote_volume", "taker_buy_base", "taker_buy_quote"):
        np.testing.assert_allclose(coarse[column], expected[column], rtol=1e-12)


def test_price_levels_are_plausible_and_symbols_independent() -> None:
    def closes(symbol: str) -> pd.Series:
        return generate_candles(symbol, "1d", "2021-01-01", "2025-01-01", 42, now=NOW)["close"]

    btc, eth = closes("BTCUSDT"), closes("ETHUSDT")
    assert 10_000 <= btc.median() <= 100_000
    assert 1_000 <= eth.median() <= 10_000
    assert 0.001 <= closes("XYZUSDT").median() <= 10_000
    correlation = np.corrcoef(np.diff(np.log(btc)), np.diff(np.log(eth)))[0, 1]
    assert abs(correlation) < 0.1


def test_no_candle_that_has_not_closed_yet() -> None:
    now = pd.Timestamp("2024-05-05 12:34:56", tz="UTC")
    frame = generate_candles("BTCUSDT", "1h", "2024-05-05", "2024-05-06", 42, now=now)
    assert frame.index[-1] == pd.Timestamp("2024-05-05 11:00", tz="UTC")
    assert validate_candles(frame, "1h", now=now).future_candles == 0
    just_closed = pd.Timestamp("2024-05-05 12:00", tz="UTC")
    frame = generate_candles("BTCUSDT", "1h", "2024-05-05", "2024-05-06", 42, now=just_closed)
    assert frame.index[-1] == pd.Timestamp("2024-05-05 11:00", tz="UTC")
    future = generate_candles("BTCUSDT", "1m", "2024-06-01", "2024-06-02", 42, now=now)
    assert future.empty
    assert list(future.columns) == list(CANDLE_COLUMNS)


def test_default_clock_is_now() -> None:
    recent = generate_candles(
        "BTCUSDT", "1d", pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=5), "2100-01-01"
    )
    assert 4 <= len(recent) <= 5
    assert validate_candles(recent, "1d").future_candles == 0


def test_market_begins_at_the_origin() -> None:
    frame = generate_candles("BTCUSDT", "1h", "2016-12-31", "2017-01-01 03:00", 42, now=NOW)
    assert frame.index[0] == ORIGIN
    assert len(frame) == 3
    assert generate_candles("BTCUSDT", "1h", "2015-01-01", "2016-01-01", 42, now=NOW).empty


def test_symbol_is_normalised() -> None:
    lower = generate_candles("btcusdt", "1h", "2024-01-01", "2024-01-02", 42, now=NOW)
    upper = generate_candles("BTCUSDT", "1h", "2024-01-01", "2024-01-02", 42, now=NOW)
    pd.testing.assert_frame_equal(lower, upper)


@pytest.mark.parametrize(
    ("symbol", "interval", "start", "end", "match"),
    [
        ("BTCUSDT", "1w", "2024-01-01", "2024-02-01", "unknown interval"),
        ("BTCUSDT", "1hr", "2024-01-01", "2024-02-01", "did you mean '1h'"),
        ("BTC/USDT", "1h", "2024-01-01", "2024-02-01", "invalid symbol"),
        ("BTCUSDT", "1h", "2024-02-01", "2024-01-01", "not after"),
        ("BTCUSDT", "1h", "yesterday-ish", "2024-01-01", "cannot read"),
    ],
)
def test_bad_input_is_rejected(
    symbol: str, interval: str, start: str, end: str, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        SyntheticSource().fetch(symbol, interval, start, end, now=NOW)  # type: ignore[arg-type]
