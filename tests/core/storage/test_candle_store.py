"""The candle store on SQLite and PostgreSQL: round trip, idempotence, rollups, gaps, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptota_core.errors import NoDataError, StorageError
from cryptota_core.market.frame import SeriesKey, candle_frame_from_arrays
from cryptota_core.market.resample import resample_candles
from cryptota_core.storage.candle_store import CandleStore, frame_fingerprint

BTC = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1m")
ETH = SeriesKey(exchange="synthetic", symbol="ETHUSDT", interval="1m")
START = pd.Timestamp("2024-01-01", tz="UTC")


def make_candles(start: pd.Timestamp, n: int, seed: int = 1, step_ms: int = 60_000) -> pd.DataFrame:
    """Valid candles with awkward float values (many significant digits) to test exact
    round trips."""
    rng = np.random.default_rng(seed)
    close = 42_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.random(n) * 1e-3)
    low = np.minimum(open_, close) * (1 - rng.random(n) * 1e-3)
    volume = rng.random(n) * 10 + 1e-8
    times = int(start.value // 1_000_000) + np.arange(n, dtype="int64") * step_ms
    return candle_frame_from_arrays(
        times,
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "quote_volume": volume * close,
            "trades": rng.integers(1, 5000, n),
            "taker_buy_base": volume * 0.5,
            "taker_buy_quote": volume * close * 0.5,
        },
    )


@pytest.fixture
def store(database_url: str) -> CandleStore:
    return CandleStore.from_url(database_url)


def test_round_trip_is_exact(store: CandleStore) -> None:
    frame = make_candles(START, 5_000)
    result = store.upsert(BTC, frame)
    assert (result.received, result.written) == (5_000, 5_000)
    back = store.read(BTC, START, START + pd.Timedelta(days=30))
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back.index.tz is not None and str(back.index.tz) == "UTC"


def test_upsert_twice_leaves_one_copy_and_rewrites_nothing(store: CandleStore) -> None:
    frame = make_candles(START, 3_000)
    store.upsert(BTC, frame)
    again = store.upsert(BTC, frame)
    assert again.written == 0
    assert store.count(BTC, START, START + pd.Timedelta(days=10)) == 3_000


def test_upsert_updates_changed_candles_only(store: CandleStore) -> None:
    frame = make_candles(START, 100)
    store.upsert(BTC, frame)
    changed = frame.copy()
    changed.iloc[10, changed.columns.get_loc("close")] = changed["high"].iloc[10]
    result = store.upsert(BTC, changed)
    assert result.written == 1
    back = store.read(BTC, START, START + pd.Timedelta(days=1))
    assert back["close"].iloc[10] == changed["close"].iloc[10]


def test_series_are_kept_apart(store: CandleStore) -> None:
    store.upsert(BTC, make_candles(START, 50, seed=1))
    store.upsert(ETH, make_candles(START, 70, seed=2))
    binance_btc = SeriesKey(exchange="binance", symbol="BTCUSDT", interval="1m")
    end = START + pd.Timedelta(days=1)
    assert store.count(BTC, START, end) == 50
    assert store.count(ETH, START, end) == 70
    assert store.read(binance_btc, START, end).empty
    assert sorted(str(k) for k in store.series()) == [str(BTC), str(ETH)]


def test_window_is_start_inclusive_end_exclusive(store: CandleStore) -> None:
    store.upsert(BTC, make_candles(START, 120))
    window = store.read(BTC, START + pd.Timedelta(minutes=10), START + pd.Timedelta(minutes=20))
    assert len(window) == 10
    assert window.index[0] == START + pd.Timedelta(minutes=10)
    assert window.index[-1] == START + pd.Timedelta(minutes=19)


def test_rollup_read_equals_resampled_base(store: CandleStore) -> None:
    frame = make_candles(START, 3 * 1440)
    store.upsert(BTC, frame)
    hourly_key = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1h")
    hourly = store.read(hourly_key, START, START + pd.Timedelta(days=3))
    assert len(hourly) == 72
    expected = resample_candles(frame, "1m", "1h")
    pd.testing.assert_frame_equal(hourly, expected, check_exact=False, rtol=1e-12)
    first_hour = frame.iloc[:60]
    assert hourly["open"].iloc[0] == first_hour["open"].iloc[0]
    assert hourly["high"].iloc[0] == first_hour["high"].max()
    assert hourly["low"].iloc[0] == first_hour["low"].min()
    assert hourly["close"].iloc[0] == first_hour["close"].iloc[-1]
    assert hourly["trades"].iloc[0] == first_hour["trades"].sum()


def test_gap_report_finds_missing_candles(store: CandleStore) -> None:
    frame = make_candles(START, 1440)
    holed = frame.drop(frame.index[100:130])
    store.upsert(BTC, holed)
    report = store.gap_report(BTC, START, START + pd.Timedelta(days=1))
    assert report.expected_rows == 1440
    assert report.rows == 1410
    assert report.gaps == [(frame.index[100], frame.index[129])]
    assert report.missing_candles == 30
    assert report.ok


def test_fingerprint_changes_with_data(store: CandleStore) -> None:
    frame = make_candles(START, 500)
    store.upsert(BTC, frame)
    end = START + pd.Timedelta(days=1)
    before = store.fingerprint(BTC, START, end)
    assert before == frame_fingerprint(frame)
    changed = frame.copy()
    changed.iloc[0, 0] = changed["high"].iloc[0]
    store.upsert(BTC, changed)
    assert store.fingerprint(BTC, START, end) != before


def test_fingerprint_is_the_same_on_every_backend(database_url: str, sqlite_url: str) -> None:
    """The same 1m candles give the same fingerprint for every read, rollups included, whether
    resampled in pandas or aggregated by TimescaleDB (whose float sums may differ in the last
    bit): the fingerprint is defined on the 1m data. Each backend is compared with SQLite."""
    urls = [sqlite_url] if database_url == sqlite_url else [sqlite_url, database_url]
    frame = make_candles(START, 3 * 1440 - 17, seed=7)
    end = START + pd.Timedelta(days=3)
    prints: dict[str, set[str]] = {}
    for url in urls:
        store = CandleStore.from_url(url)
        store.upsert(BTC, frame)
        for interval in ("1m", "15m", "1h", "4h", "1d"):
            key = BTC.model_copy(update={"interval": interval})
            prints.setdefault(interval, set()).add(store.fingerprint(key, START, end))
        store.engine.dispose()
    assert all(len(found) == 1 for found in prints.values()), prints
    assert len({next(iter(found)) for found in prints.values()}) == 5  # intervals differ


HOUR = SeriesKey(exchange="synthetic", symbol="BTCUSDT", interval="1h")


def _minutes(frame: pd.DataFrame, *ranges: tuple[int, int]) -> pd.DataFrame:
    """The candles of ``frame`` at the given [from, to) minute offsets."""
    return pd.concat([frame.iloc[lo:hi] for lo, hi in ranges])


def test_rollups_hold_complete_buckets_inside_the_window_only(store: CandleStore) -> None:
    frame = make_candles(START, 6 * 60)
    # Hour 1 has an outage inside it (kept: later candles exist); hour 5 is still forming.
    store.upsert(BTC, _minutes(frame, (0, 70), (80, 5 * 60 + 30)))
    hours = store.read(HOUR, START, START + pd.Timedelta(hours=6))
    assert list(hours.index) == [START + pd.Timedelta(hours=h) for h in range(5)]
    assert (
        hours["trades"].iloc[1]
        == frame["trades"].iloc[60:70].sum() + frame["trades"].iloc[80:120].sum()
    )
    # A window starting or ending inside an hour returns no bucket reaching outside it.
    inside = store.read(
        HOUR, START + pd.Timedelta(minutes=10), START + pd.Timedelta(hours=3, minutes=30)
    )
    assert list(inside.index) == [START + pd.Timedelta(hours=h) for h in (1, 2)]
    assert inside["close"].iloc[-1] == frame["close"].iloc[179]  # not a candle after the end
    on_edge = store.read(HOUR, START, START + pd.Timedelta(hours=3))
    assert list(on_edge.index) == [START + pd.Timedelta(hours=h) for h in range(3)]


def test_rollup_of_data_stopping_inside_a_bucket_drops_it(store: CandleStore) -> None:
    frame = make_candles(START, 4 * 60)
    # Hour 2 misses its last ten minutes and nothing follows: it is still forming.
    store.upsert(BTC, frame.iloc[: 2 * 60 + 50])
    assert len(store.read(HOUR, START, START + pd.Timedelta(hours=4))) == 2
    # Once later candles exist, the ten missing minutes are an outage and hour 2 is kept.
    store.upsert(BTC, frame.iloc[3 * 60 :])
    hours = store.read(HOUR, START, START + pd.Timedelta(hours=4))
    assert list(hours.index) == [START + pd.Timedelta(hours=h) for h in range(4)]
    assert hours["close"].iloc[2] == frame["close"].iloc[2 * 60 + 49]


def test_corrected_candle_is_visible_at_once_in_rollups(store: CandleStore) -> None:
    frame = make_candles(START, 2 * 1440)
    store.upsert(BTC, frame)
    end = START + pd.Timedelta(days=2)
    before = {
        i: store.read(BTC.model_copy(update={"interval": i}), START, end) for i in ("1h", "1d")
    }
    assert len(before["1h"]) == 48 and len(before["1d"]) == 2
    corrected = frame.iloc[[30]].copy()  # in the first hour and the first day
    corrected["high"] = corrected["high"] * 2
    assert store.upsert(BTC, corrected).written == 1
    for interval, old in before.items():
        now = store.read(BTC.model_copy(update={"interval": interval}), START, end)
        assert now["high"].iloc[0] == corrected["high"].iloc[0] != old["high"].iloc[0]
        pd.testing.assert_frame_equal(now.iloc[1:], old.iloc[1:])


def test_database_error_is_not_blamed_on_the_url(store: CandleStore) -> None:
    from sqlalchemy import text

    from cryptota_core.storage.database import translate_db_errors

    with (
        pytest.raises(StorageError, match=r"refused: .*no_such_table") as info,
        translate_db_errors(store.engine),
        store.engine.connect() as conn,
    ):
        conn.execute(text("SELECT count(*) FROM no_such_table")).scalar_one()
    assert "cannot reach" not in str(info.value)
    assert "CRYPTOTA_DATABASE_URL" not in str(info.value)


def test_read_require_names_the_ingest_command(store: CandleStore) -> None:
    with pytest.raises(NoDataError, match="cryptota ingest --symbols BTCUSDT"):
        store.read(BTC, START, START + pd.Timedelta(days=1), require=True)


def test_summary(store: CandleStore) -> None:
    frame = make_candles(START, 90)
    store.upsert(BTC, frame)
    summary = store.summary(BTC)
    assert summary.rows == 90
    assert summary.first == frame.index[0]
    assert summary.last == frame.index[-1]


def test_delete_range(store: CandleStore) -> None:
    store.upsert(BTC, make_candles(START, 120))
    deleted = store.delete_range(BTC, START, START + pd.Timedelta(minutes=60))
    assert deleted == 60
    assert store.count(BTC, START, START + pd.Timedelta(days=1)) == 60


def test_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(
        StorageError,
        match=r"cannot reach the database at postgresql\+psycopg://user:\*\*\*@127\.0\.0\.1:1/nope",
    ):
        CandleStore.from_url("postgresql://user:secret@127.0.0.1:1/nope")


def test_unreachable_database_error_hides_the_password() -> None:
    with pytest.raises(StorageError) as info:
        CandleStore.from_url("postgresql://user:hunter2@127.0.0.1:1/nope")
    assert "hunter2" not in str(info.value)


def test_purge_before_deletes_old_candles_and_gaps_only(store: CandleStore) -> None:
    frame = make_candles(START, 3 * 1440)
    holed = frame.drop(frame.index[100:130])
    store.upsert(BTC, holed)
    store.upsert(ETH, make_candles(START, 3 * 1440, seed=2))
    end = START + pd.Timedelta(days=3)
    store.record_gaps(BTC, store.gap_report(BTC, START, end), START, end)
    deleted = store.purge_before(START + pd.Timedelta(days=1))
    assert deleted == (1440 - 30) + 1440
    assert store.count(BTC, START, end) == 2 * 1440
    assert store.count(ETH, START, end) == 2 * 1440
    with store.engine.connect() as conn:
        from cryptota_core.storage.schema import candle_gaps

        assert conn.execute(candle_gaps.select()).all() == []


def test_rollup_counts_and_refresh(store: CandleStore) -> None:
    store.upsert(BTC, make_candles(START, 1440))
    counts = store.rollup_counts("synthetic", "BTCUSDT", START, START + pd.Timedelta(days=1))
    assert counts == {"15m": 96, "1h": 24, "4h": 6, "1d": 1}
    # Only TimescaleDB has aggregates to refresh; elsewhere rollups are resampled on read.
    assert store.refresh_rollups(START, START + pd.Timedelta(days=1)) is store.has_timescale
