"""The data.binance.vision source, against a local archive tree (file://) and the same tree over
a loopback HTTP server: file choice, gaps, checksums, exact round trips, retries."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import requests

from cryptota_core.errors import ConfigError, DataError, InvalidInputError, SourceUnavailableError
from cryptota_core.market.frame import CANDLE_COLUMNS, validate_candles
from cryptota_core.market.sources.archive import ArchiveSource
from cryptota_core.market.sources.base import CandleSource
from cryptota_core.market.sources.synthetic import generate_candles
from tests.core.market.archive_fixture import (
    archive_url,
    corrupt,
    daily_path,
    monthly_path,
    serve_archive,
    write_archive,
    write_day,
    write_month,
)

NOW = pd.Timestamp("2026-01-01", tz="UTC")
DECEMBER = ("2024-12-01", "2025-01-01")


def ts(value: str) -> pd.Timestamp:
    return pd.Timestamp(value, tz="UTC")


@pytest.fixture(scope="module")
def btc_1h() -> pd.DataFrame:
    """Three months of hourly candles spanning a year end (ms before 2025, µs after)."""
    return generate_candles("BTCUSDT", "1h", "2024-11-01", "2025-02-01", 42, now=NOW)


def between(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    """The candles of ``frame`` opening in ``[start, end)``."""
    return frame[(frame.index >= ts(start)) & (frame.index < ts(end))]


def days(first: str, last: str) -> list[str]:
    return [f"{d:%Y-%m-%d}" for d in pd.date_range(first, last, freq="D")]


def fetch(url: str, start: str, end: str, interval: str = "1h", **kwargs: object) -> pd.DataFrame:
    return ArchiveSource(url, **kwargs).fetch("BTCUSDT", interval, ts(start), ts(end), now=NOW)  # type: ignore[arg-type]


def test_source_satisfies_candle_source_protocol(tmp_path: Path) -> None:
    source = ArchiveSource(archive_url(tmp_path))
    assert isinstance(source, CandleSource)
    assert source.exchange == "binance"


def test_round_trip_is_exact_across_monthly_and_daily_files(
    tmp_path: Path, btc_1h: pd.DataFrame
) -> None:
    url = write_archive(
        tmp_path,
        btc_1h,
        "BTCUSDT",
        "1h",
        monthly=["2024-11", "2024-12"],
        daily=days("2025-01-01", "2025-01-31"),
    )
    got = fetch(url, "2024-11-20 05:00", "2025-01-10 17:00")
    expected = btc_1h.loc["2024-11-20 05:00":"2025-01-10 16:00"]
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_round_trip_of_a_month_of_1m_candles(tmp_path: Path) -> None:
    frame = generate_candles("ETHUSDT", "1m", "2024-02-01", "2024-03-01", 7, now=NOW)
    url = write_archive(tmp_path, frame, "ETHUSDT", "1m", time_unit="ms")
    got = ArchiveSource(url).fetch("ETHUSDT", "1m", ts("2024-02-01"), ts("2024-03-01"), now=NOW)
    pd.testing.assert_frame_equal(got, frame, check_exact=True)
    assert validate_candles(got, "1m", start=ts("2024-02-01"), end=ts("2024-03-01")).gaps == []


@pytest.mark.parametrize("time_unit", ["us", "auto"])
def test_microsecond_files_read_as_the_same_candles(
    tmp_path: Path, btc_1h: pd.DataFrame, time_unit: str
) -> None:
    url = write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", time_unit=time_unit)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(fetch(url, "2024-11-01", "2025-02-01"), btc_1h, check_exact=True)


def test_header_rows_in_archive_files_are_accepted(tmp_path: Path, btc_1h: pd.DataFrame) -> None:
    url = write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", header=True)
    pd.testing.assert_frame_equal(fetch(url, *DECEMBER), between(btc_1h, *DECEMBER))


def test_monthly_file_is_preferred_over_daily_files(tmp_path: Path, btc_1h: pd.DataFrame) -> None:
    # The daily files of December hold different prices: if they were read, the test would see.
    altered = btc_1h.copy()
    altered[["open", "high", "low", "close"]] *= 2
    write_month(tmp_path, btc_1h, "BTCUSDT", "1h", "2024-12")
    for day in days("2024-12-01", "2024-12-31"):
        write_day(tmp_path, altered, "BTCUSDT", "1h", day)
    seen: list[str] = []
    got = fetch(archive_url(tmp_path), "2024-12-05", "2024-12-07", on_progress=seen.append)
    pd.testing.assert_frame_equal(got, btc_1h.loc["2024-12-05":"2024-12-06"])
    assert seen == ["BTCUSDT-1h-2024-12.zip"]


def test_daily_files_fill_a_month_without_monthly_file(
    tmp_path: Path, btc_1h: pd.DataFrame
) -> None:
    write_month(tmp_path, btc_1h, "BTCUSDT", "1h", "2024-11")
    url = write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", daily=days("2024-12-01", "2024-12-31"))
    seen: list[str] = []
    got = fetch(url, "2024-11-30", "2024-12-03", on_progress=seen.append)
    pd.testing.assert_frame_equal(got, btc_1h.loc["2024-11-30":"2024-12-02"])
    assert seen == [
        "BTCUSDT-1h-2024-11.zip",
        "BTCUSDT-1h-2024-12-01.zip",
        "BTCUSDT-1h-2024-12-02.zip",
    ]


def test_a_day_in_neither_file_is_a_gap_not_an_error(tmp_path: Path, btc_1h: pd.DataFrame) -> None:
    present = [d for d in days("2024-12-01", "2024-12-10") if d != "2024-12-04"]
    url = write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", daily=present)
    got = fetch(url, "2024-12-01", "2024-12-11")
    report = validate_candles(got, "1h", start=ts("2024-12-01"), end=ts("2024-12-11"), now=NOW)
    assert report.ok
    assert report.gaps == [(ts("2024-12-04 00:00"), ts("2024-12-04 23:00"))]
    assert len(got) == 9 * 24


def test_empty_archive_gives_an_empty_frame(tmp_path: Path) -> None:
    got = fetch(archive_url(tmp_path), "2024-01-01", "2024-03-01")
    assert got.empty
    assert list(got.columns) == list(CANDLE_COLUMNS)


def test_days_that_have_not_begun_are_not_requested(tmp_path: Path, btc_1h: pd.DataFrame) -> None:
    write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", daily=days("2025-01-01", "2025-01-31"))
    with serve_archive(tmp_path) as server:
        source = ArchiveSource(server.url)
        got = source.fetch(
            "BTCUSDT", "1h", ts("2025-01-01"), ts("2025-02-01"), now=ts("2025-01-03 08:00")
        )
    assert len(got) == 3 * 24  # the fixture has the whole month; we ask only for begun days
    daily = [p for p in server.requests if "/daily/" in p and p.endswith(".zip")]
    assert [p.rsplit("-", 1)[-1] for p in daily] == ["01.zip", "02.zip", "03.zip"]


@pytest.mark.parametrize("how", ["checksum", "zip"])
def test_checksum_mismatch_raises_and_returns_nothing(
    tmp_path: Path, btc_1h: pd.DataFrame, how: str
) -> None:
    url = write_archive(tmp_path, btc_1h, "BTCUSDT", "1h")
    corrupt(monthly_path(tmp_path, "BTCUSDT", "1h", "2024-12"), how)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"BTCUSDT-1h-2024-12\.zip fails its checksum") as error:
        fetch(url, "2024-11-01", "2025-02-01")
    assert "\n" not in str(error.value)


def test_malformed_checksum_file_raises(tmp_path: Path, btc_1h: pd.DataFrame) -> None:
    url = write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", monthly=["2024-12"])
    path = monthly_path(tmp_path, "BTCUSDT", "1h", "2024-12")
    path.with_name(path.name + ".CHECKSUM").write_text("<html>oops</html>")
    with pytest.raises(DataError, match=r"CHECKSUM is malformed"):
        fetch(url, *DECEMBER)


def test_file_without_checksum_is_read_unverified(tmp_path: Path, btc_1h: pd.DataFrame) -> None:
    url = write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", monthly=["2024-12"], checksum=False)
    assert (
        not monthly_path(tmp_path, "BTCUSDT", "1h", "2024-12").with_suffix(".zip.CHECKSUM").exists()
    )
    pd.testing.assert_frame_equal(fetch(url, *DECEMBER), between(btc_1h, *DECEMBER))


def test_malformed_csv_inside_a_verified_zip_names_the_file(
    tmp_path: Path, btc_1h: pd.DataFrame
) -> None:
    url = write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", daily=["2024-12-02"])
    corrupt(daily_path(tmp_path, "BTCUSDT", "1h", "2024-12-02"), "csv")
    with pytest.raises(DataError) as error:
        fetch(url, "2024-12-01", "2024-12-03")
    message = str(error.value)
    assert "BTCUSDT-1h-2024-12-02.zip:BTCUSDT-1h-2024-12-02.csv line 1" in message
    assert "\n" not in message


def test_bad_interval_symbol_or_window_is_rejected(tmp_path: Path) -> None:
    source = ArchiveSource(archive_url(tmp_path))
    with pytest.raises(InvalidInputError, match="unknown interval"):
        source.fetch("BTCUSDT", "1w", ts("2024-01-01"), ts("2024-02-01"))
    with pytest.raises(InvalidInputError, match="invalid symbol"):
        source.fetch("BTC-USDT", "1h", ts("2024-01-01"), ts("2024-02-01"))
    with pytest.raises(InvalidInputError, match="not after"):
        source.fetch("BTCUSDT", "1h", ts("2024-02-01"), ts("2024-01-01"))


def test_bad_base_url_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CRYPTOTA_ARCHIVE_URL"):
        ArchiveSource("ftp://example.invalid/archive")
    missing = ArchiveSource((tmp_path / "nowhere").as_uri())
    with pytest.raises(ConfigError, match="does not exist"):
        missing.fetch("BTCUSDT", "1h", ts("2024-01-01"), ts("2024-02-01"), now=NOW)


# --- over HTTP (a loopback server over the same tree) -------------------------------------------


def test_http_archive_matches_file_archive(tmp_path: Path, btc_1h: pd.DataFrame) -> None:
    url = write_archive(
        tmp_path,
        btc_1h,
        "BTCUSDT",
        "1h",
        monthly=["2024-11"],
        daily=days("2024-12-01", "2024-12-03"),
    )
    local = fetch(url, "2024-11-25", "2024-12-04")
    with serve_archive(tmp_path) as server:
        remote = fetch(server.url, "2024-11-25", "2024-12-04")
    pd.testing.assert_frame_equal(remote, local, check_exact=True)
    pd.testing.assert_frame_equal(remote, btc_1h.loc["2024-11-25":"2024-12-03"], check_exact=True)
    # December's monthly file was a 404, then each day was read with its checksum
    assert "/data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-12.zip" in server.requests
    assert (
        "/data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-12-02.zip.CHECKSUM" in server.requests
    )


def test_http_500_then_200_is_retried(tmp_path: Path, btc_1h: pd.DataFrame) -> None:
    write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", monthly=["2024-12"])
    path = "/data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-12.zip"
    with serve_archive(tmp_path, fail={path: 1}) as server:
        got = fetch(server.url, *DECEMBER, backoff=0.01)
    pd.testing.assert_frame_equal(got, between(btc_1h, *DECEMBER), check_exact=True)
    assert server.requests.count(path) == 2


def test_http_timeout_is_retried(tmp_path: Path, btc_1h: pd.DataFrame) -> None:
    write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", monthly=["2024-12"])
    path = "/data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-12.zip"
    with serve_archive(tmp_path, stall={path: 1.0}) as server:
        got = fetch(server.url, *DECEMBER, backoff=0.01, timeout=0.3)
    pd.testing.assert_frame_equal(got, between(btc_1h, *DECEMBER), check_exact=True)
    assert server.requests.count(path) == 2


def test_http_persistent_500_gives_up_with_source_unavailable(
    tmp_path: Path, btc_1h: pd.DataFrame
) -> None:
    write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", monthly=["2024-12"])
    path = "/data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-12.zip"
    expected = r"failed 3 times \(last: HTTP 503\)"
    with (
        serve_archive(tmp_path, fail={path: 100}, fail_status=503) as server,
        pytest.raises(SourceUnavailableError, match=expected),
    ):
        fetch(server.url, *DECEMBER, backoff=0.01, retries=2)
    assert server.requests.count(path) == 3


def test_http_client_error_is_not_retried(tmp_path: Path, btc_1h: pd.DataFrame) -> None:
    write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", monthly=["2024-12"])
    path = "/data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-12.zip"
    with (
        serve_archive(tmp_path, fail={path: 100}, fail_status=403) as server,
        pytest.raises(SourceUnavailableError, match="HTTP 403"),
    ):
        fetch(server.url, *DECEMBER, backoff=0.01)
    assert server.requests.count(path) == 1


def test_http_checksum_mismatch_raises(tmp_path: Path, btc_1h: pd.DataFrame) -> None:
    write_archive(tmp_path, btc_1h, "BTCUSDT", "1h", monthly=["2024-12"])
    corrupt(monthly_path(tmp_path, "BTCUSDT", "1h", "2024-12"), "zip")
    with serve_archive(tmp_path) as server, pytest.raises(DataError, match="fails its checksum"):
        fetch(server.url, *DECEMBER)


def test_unreachable_server_gives_up_with_source_unavailable() -> None:
    # A port on loopback that nothing listens on: connection refused at once.
    with serve_archive(Path(".")) as server:
        url = server.url
    session = requests.Session()
    with pytest.raises(SourceUnavailableError, match="ConnectionError"):
        fetch(url, *DECEMBER, backoff=0.01, retries=1, session=session)
