"""The Binance kline CSV boundary: every form the archive ships reads, anything else fails with
one line that names the file and the line."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptota_core.errors import DataError, InvalidInputError
from cryptota_core.market.binance_csv import (
    ACCEPTED_FORM,
    KLINE_COLUMNS,
    read_kline_csv,
    write_kline_csv,
)
from cryptota_core.market.frame import CANDLE_COLUMNS, validate_candles
from cryptota_core.market.sources.synthetic import generate_candles

# Three lines in the archive's own spot format (ms, 8 decimals, no header).
SPOT_2024 = (
    "1704067200000,42283.58000000,42298.62000000,42283.57000000,42298.61000000,35.92724000,"
    "1704067259999,1519510.14460280,1327,20.30768000,858781.37930460,0\n"
    "1704067260000,42298.62000000,42320.00000000,42298.61000000,42319.99000000,21.76608000,"
    "1704067319999,920744.19937750,1103,13.17616000,557420.17213260,0\n"
    "1704067320000,42319.99000000,42331.54000000,42301.10000000,42325.50000000,24.71178000,"
    "1704067379999,1045854.66011430,1136,11.95453000,505939.13617820,0\n"
)
# The same format after the 2025 switch: µs times.
SPOT_2025 = (
    "1735689600000000,93576.00000000,93610.93000000,93537.50000000,93610.93000000,8.21827000,"
    "1735689659999999,769057.34831300,1451,4.94236000,462489.34575210,0\n"
    "1735689660000000,93610.93000000,93652.00000000,93606.00000000,93650.00000000,5.98420000,"
    "1735689719999999,560270.31271100,1209,3.79190000,355017.57310020,0\n"
)
FUTURES_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore\n"
)


def _one_line_error(error: pytest.ExceptionInfo[DataError], name: str) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert name in message
    assert ACCEPTED_FORM in message
    return message


@pytest.fixture(scope="module")
def btc_1m() -> pd.DataFrame:
    return generate_candles(
        "BTCUSDT", "1m", "2024-12-31 22:00", "2025-01-01 02:00", now="2026-01-01"
    )


def test_reads_spot_file_values_exactly() -> None:
    frame = read_kline_csv(io.StringIO(SPOT_2024))
    assert list(frame.columns) == list(CANDLE_COLUMNS)
    assert frame.index.name == "open_time"
    assert str(frame.index.dtype) == "datetime64[ns, UTC]"
    assert frame.index[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")
    assert frame["trades"].dtype == np.int64
    first = frame.iloc[0]
    assert first["open"] == 42283.58
    assert first["quote_volume"] == 1519510.14460280
    assert first["trades"] == 1327
    assert first["taker_buy_quote"] == 858781.37930460
    assert validate_candles(frame, "1m", now=pd.Timestamp("2026-01-01", tz="UTC")).ok


def test_header_row_is_detected_and_skipped() -> None:
    plain = read_kline_csv(io.StringIO(SPOT_2024))
    with_header = read_kline_csv(io.StringIO(FUTURES_HEADER + SPOT_2024))
    pd.testing.assert_frame_equal(plain, with_header)


def test_microsecond_times_are_normalised_to_milliseconds() -> None:
    frame = read_kline_csv(io.StringIO(SPOT_2025))
    assert list(frame.index) == [
        pd.Timestamp("2025-01-01 00:00", tz="UTC"),
        pd.Timestamp("2025-01-01 00:01", tz="UTC"),
    ]


def test_file_mixing_2024_ms_and_2025_us_rows() -> None:
    frame = read_kline_csv(io.StringIO(SPOT_2024 + SPOT_2025))
    assert len(frame) == 5
    assert frame.index[2] == pd.Timestamp("2024-01-01 00:02", tz="UTC")
    assert frame.index[3] == pd.Timestamp("2025-01-01 00:00", tz="UTC")
    assert frame["open"].iloc[3] == 93576.0


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("time_unit", ["ms", "us", "auto"])
def test_write_then_read_round_trips_exactly(
    btc_1m: pd.DataFrame, header: bool, time_unit: str
) -> None:
    buffer = io.BytesIO()
    write_kline_csv(btc_1m, buffer, interval="1m", header=header, time_unit=time_unit)  # type: ignore[arg-type]
    buffer.seek(0)
    pd.testing.assert_frame_equal(read_kline_csv(buffer), btc_1m, check_exact=True)


def test_auto_time_unit_switches_to_us_at_2025(btc_1m: pd.DataFrame) -> None:
    buffer = io.StringIO()
    write_kline_csv(btc_1m, buffer, interval="1m", time_unit="auto")
    lines = buffer.getvalue().splitlines()
    last_2024 = lines[119].split(",")
    first_2025 = lines[120].split(",")
    assert last_2024[0] == "1735689540000"
    assert last_2024[6] == "1735689599999"
    assert first_2025[0] == "1735689600000000"
    assert first_2025[6] == "1735689659999999"


def test_written_file_has_binance_columns_and_close_time() -> None:
    frame = generate_candles("ETHUSDT", "1h", "2024-03-01", "2024-03-02", now="2026-01-01")
    buffer = io.StringIO()
    write_kline_csv(frame, buffer, interval="1h", header=True)
    raw = pd.read_csv(io.StringIO(buffer.getvalue()))
    assert tuple(raw.columns) == KLINE_COLUMNS
    assert len(raw) == 24
    assert (raw["close_time"] - raw["open_time"] == 3_600_000 - 1).all()
    assert (raw["ignore"] == 0).all()


def test_write_infers_interval_from_the_frame(tmp_path: Path) -> None:
    frame = generate_candles("ETHUSDT", "4h", "2024-03-01", "2024-03-03", now="2026-01-01")
    write_kline_csv(frame, tmp_path / "eth.csv")
    raw = pd.read_csv(tmp_path / "eth.csv", header=None)
    assert (raw[6] - raw[0] == 4 * 3_600_000 - 1).all()
    with pytest.raises(InvalidInputError, match="interval"):
        write_kline_csv(frame.iloc[:1], tmp_path / "one.csv")


def test_reads_path_text_buffer_binary_buffer_and_zip(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01.csv"
    path.write_text(SPOT_2024)
    expected = read_kline_csv(path)
    pd.testing.assert_frame_equal(read_kline_csv(str(path)), expected)
    pd.testing.assert_frame_equal(read_kline_csv(io.BytesIO(SPOT_2024.encode())), expected)
    zipped = tmp_path / "BTCUSDT-1m-2024-01.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("BTCUSDT-1m-2024-01.csv", SPOT_2024)
    pd.testing.assert_frame_equal(read_kline_csv(zipped), expected)


def test_crlf_bom_and_trailing_blank_lines_are_accepted() -> None:
    text = "\ufeff" + SPOT_2024.replace("\n", "\r\n") + "\r\n\r\n"
    pd.testing.assert_frame_equal(
        read_kline_csv(io.BytesIO(text.encode())), read_kline_csv(io.StringIO(SPOT_2024))
    )


def test_unsorted_rows_and_exact_duplicates_are_fixed_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = SPOT_2024.splitlines(keepends=True)
    shuffled = lines[2] + lines[0] + lines[1] + lines[0]
    with caplog.at_level(logging.WARNING):
        frame = read_kline_csv(io.StringIO(shuffled))
    pd.testing.assert_frame_equal(frame, read_kline_csv(io.StringIO(SPOT_2024)))
    assert "sorted" in caplog.text
    assert "duplicate" in caplog.text


def test_large_month_reads_in_one_pass(tmp_path: Path) -> None:
    # A full 31-day month of 1m candles, the size of a real monthly archive file.
    frame = generate_candles("BTCUSDT", "1m", "2024-01-01", "2024-02-01", now="2026-01-01")
    path = tmp_path / "BTCUSDT-1m-2024-01.csv"
    write_kline_csv(frame, path, interval="1m")
    back = read_kline_csv(path)
    assert len(back) == 44_640
    pd.testing.assert_frame_equal(back, frame, check_exact=True)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("", "is empty", id="empty"),
        pytest.param("\n  \n", "is empty", id="blank"),
        pytest.param(FUTURES_HEADER, "no candles", id="header-only"),
        pytest.param(SPOT_2024 + "1704067380000,1,2,3\n", r"line 4: found 4 columns", id="short"),
        pytest.param(
            SPOT_2024.replace(",0\n", ",0,7\n", 1), r"line 1: found 13 columns", id="long"
        ),
        pytest.param(
            SPOT_2024.replace("42298.62000000", "n/a", 1),
            r"line 1: high 'n/a' is not a number",
            id="non-numeric-price",
        ),
        pytest.param(
            SPOT_2024.replace("1327", "13.5", 1),
            r"line 1: trades '13.5' is not an integer",
            id="fractional-trades",
        ),
        pytest.param(
            SPOT_2024.replace("42319.99000000", "nan", 1),
            r"line 2: close is nan, not a finite number",
            id="nan-price",
        ),
        pytest.param(
            SPOT_2024.replace("1704067320000", "1704067320000000000", 1),
            r"line 3: open_time 1704067320000000000 is neither",
            id="nanosecond-time",
        ),
        pytest.param(
            FUTURES_HEADER + SPOT_2024 + FUTURES_HEADER,
            r"line 5: open_time 'open_time' is not an integer",
            id="header-in-the-middle",
        ),
        pytest.param("date;open;close\n2024-01-01;1;2\n", r"line 1: found 1 columns", id="semi"),
        pytest.param('{"open_time": 1704067200000}\n', "line 1", id="json"),
        pytest.param("\x00\x01PNG\x00garbage", "binary, not a CSV", id="binary"),
    ],
)
def test_malformed_file_raises_one_line_data_error(content: str, expected: str) -> None:
    with pytest.raises(DataError) as error:
        read_kline_csv(io.BytesIO(content.encode()), name="BTCUSDT-1m-2024-01.csv")
    message = _one_line_error(error, "BTCUSDT-1m-2024-01.csv")
    assert re.search(expected, message), message


def test_conflicting_duplicate_candles_raise_data_error() -> None:
    lines = SPOT_2024.splitlines(keepends=True)
    conflicting = lines[0] + lines[0].replace("42283.58000000", "42283.59000000", 1)
    with pytest.raises(DataError) as error:
        read_kline_csv(io.StringIO(conflicting), name="dup.csv")
    assert "2024-01-01T00:00:00+00:00" in str(error.value)
    assert "dup.csv" in str(error.value)


def test_zip_with_two_members_or_damaged_zip_raises(tmp_path: Path) -> None:
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", SPOT_2024)
        archive.writestr("b.csv", SPOT_2024)
    with pytest.raises(DataError, match=r"two\.zip is a zip of 2 files"):
        read_kline_csv(two)
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(DataError, match=r"damaged\.zip is a damaged zip"):
        read_kline_csv(damaged)


def test_error_in_a_csv_inside_a_zip_names_both(tmp_path: Path) -> None:
    zipped = tmp_path / "BTCUSDT-1m-2024-01.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("BTCUSDT-1m-2024-01.csv", SPOT_2024 + "x\n")
    with pytest.raises(DataError) as error:
        read_kline_csv(zipped)
    message = _one_line_error(error, "BTCUSDT-1m-2024-01.zip:BTCUSDT-1m-2024-01.csv")
    assert "line 4" in message


def test_missing_path_is_the_users_fault(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"does not exist") as error:
        read_kline_csv(tmp_path / "nope.csv")
    assert "nope.csv" in str(error.value)
    with pytest.raises(InvalidInputError, match="is a directory"):
        read_kline_csv(tmp_path)
