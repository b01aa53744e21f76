"""The core of issue 13's fixes, below the CLI: ``candles_from_csv`` validates a file the way
ingestion validates what it stores, ``read_kline_rows`` bounds what it reads, ``BrokerSettings``
is the one check of the broker settings, and ``SearchSpec`` refuses a negative seed."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from cryptota_core.app.candles import candles_from_csv
from cryptota_core.backtest.engine import run_backtest
from cryptota_core.backtest.fast import run_fast_backtest
from cryptota_core.backtest.sweep import run_sweep
from cryptota_core.broker import MAX_CASH, BrokerSettingError, BrokerSettings
from cryptota_core.errors import DataError, InvalidInputError
from cryptota_core.market.binance_csv import read_kline_csv, read_kline_rows, write_kline_csv
from cryptota_core.market.frame import first_defect, validate_candles
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.research.optimize import BrokerSettings as ResearchBroker
from cryptota_core.research.search import SearchSpec, parameter_sets

START = pd.Timestamp("2024-01-01", tz="UTC")
NOW = pd.Timestamp("2024-01-10T12:30", tz="UTC")


@pytest.fixture(scope="module")
def hourly() -> pd.DataFrame:
    return SyntheticSource(seed=3).fetch("BTCUSDT", "1h", START, START + pd.Timedelta(days=10))


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    write_kline_csv(frame, path, interval="1h")
    return path


# ------------------------------------------------------------------------ candles_from_csv
def test_the_first_candle_not_closed_at_now_is_named(hourly: pd.DataFrame, tmp_path: Path) -> None:
    """At 12:30 the 12:00 candle is still open: it and the eleven after it are refused."""
    path = _csv(tmp_path / "btc.csv", hourly)
    with pytest.raises(DataError) as error:
        candles_from_csv(path, now=NOW)
    assert str(error.value) == (
        f"{path}: the candle opening 2024-01-10T12:00Z has not closed yet (it closes at "
        "2024-01-10T13:00Z, it is now 2024-01-10T12:30Z), so its prices are not final (the "
        "first of 12 such candles)"
    )
    before = candles_from_csv(path, now=pd.Timestamp("2024-01-11", tz="UTC"))
    assert len(before.frame) == len(hourly) and before.interval == "1h"


def test_a_valid_file_loads_as_before(hourly: pd.DataFrame, tmp_path: Path) -> None:
    path = _csv(tmp_path / "btc.csv", hourly)
    candles = candles_from_csv(path)
    pd.testing.assert_frame_equal(candles.frame, read_kline_csv(path))
    assert candles.origin == "csv:btc.csv" and candles.key is None


def test_gaps_pass_with_a_warning(
    hourly: pd.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _csv(tmp_path / "gaps.csv", hourly.drop(hourly.index[[5, 6, 50]]))
    with caplog.at_level(logging.WARNING, logger="cryptota_core.app.candles"):
        candles = candles_from_csv(path)
    assert len(candles.frame) == len(hourly) - 3
    assert "2 gaps, 3 missing 1h candles in all (the first from 2024-01-01T05:00Z to " in (
        caplog.text
    )


def test_a_declared_interval_is_checked_against_the_spacing(
    hourly: pd.DataFrame, tmp_path: Path
) -> None:
    path = _csv(tmp_path / "btc.csv", hourly)
    assert candles_from_csv(path, "1h").interval == "1h"
    with pytest.raises(InvalidInputError, match="--interval 15m does not match"):
        candles_from_csv(path, "15m")
    with pytest.raises(InvalidInputError, match="unknown interval '1hour'"):
        candles_from_csv(path, "1hour")


def test_the_byte_limit_is_a_setting_or_an_argument(
    hourly: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _csv(tmp_path / "btc.csv", hourly)
    size = path.stat().st_size
    assert len(candles_from_csv(path, max_bytes=size).frame) == len(hourly)
    with pytest.raises(InvalidInputError, match=f"holds more than {size - 1:,} bytes"):
        candles_from_csv(path, max_bytes=size - 1)
    monkeypatch.setenv("CRYPTOTA_CSV_MAX_BYTES", "100")
    with pytest.raises(InvalidInputError, match="holds more than 100 bytes"):
        candles_from_csv(path)


# ------------------------------------------------------------------------ read_kline_rows
def test_rows_keep_file_order_and_repeats_while_the_frame_reader_still_fixes_them(
    hourly: pd.DataFrame, tmp_path: Path
) -> None:
    lines = _csv(tmp_path / "btc.csv", hourly).read_text().splitlines(keepends=True)
    messy = "".join([*lines[10:], *lines[:10], lines[3]])
    rows = read_kline_rows(io.StringIO(messy))
    assert len(rows) == len(hourly) + 1
    assert rows.index[0] == hourly.index[10] and rows.index[-1] == hourly.index[3]
    # read_kline_csv's contract is unchanged: sorted, exact repeats dropped with a warning.
    pd.testing.assert_frame_equal(read_kline_csv(io.StringIO(messy)), hourly, check_freq=False)


def test_a_zip_member_larger_than_the_limit_is_refused_unpacked(tmp_path: Path) -> None:
    """A small zip can unpack to gigabytes: the member's size is checked, not the zip's."""
    member = ("1704067200000,1,1,1,1,1,1704070799999,1,1,1,1,0\n" * 10_000).encode()
    zipped = tmp_path / "BTCUSDT-1h.zip"
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-1h.csv", member)
    assert zipped.stat().st_size < 10_000 < len(member)
    with pytest.raises(InvalidInputError, match=r"BTCUSDT-1h.zip:BTCUSDT-1h.csv holds more than"):
        read_kline_rows(zipped, max_bytes=10_000)
    assert len(read_kline_rows(zipped, max_bytes=len(member))) == 10_000


def test_devices_are_refused_even_without_a_limit() -> None:
    with pytest.raises(InvalidInputError, match="/dev/zero is a character device"):
        read_kline_csv("/dev/zero")


# ------------------------------------------------------------------ validate_candles' rows
def test_validate_candles_records_where_each_defect_first_is(hourly: pd.DataFrame) -> None:
    frame = hourly.reset_index()
    frame.loc[7, "volume"] = -1.0
    frame.loc[4, "low"] = frame.loc[4, "high"] + 1
    frame.loc[9, "open_time"] = frame.loc[9, "open_time"] + pd.Timedelta(seconds=30)
    report = validate_candles(frame, "1h", now=NOW)
    assert report.first_rows == {
        "negative_volume": 7,
        "ohlc_violations": 4,
        "misaligned": 9,
        "future_candles": 228,
    }
    assert (report.negative_volume, report.ohlc_violations, report.misaligned) == (1, 1, 1)
    line = first_defect(frame, report)
    assert line is not None and line.startswith("the candle opening 2024-01-01T04:00Z breaks")
    skipped = first_defect(frame, report, ignore=("ohlc_violations",))
    assert skipped == "the candle opening 2024-01-01T07:00Z has volume -1.0; volume must be a " \
        "number >= 0 (the only such candle)"  # fmt: skip
    assert "2024-01-01T09:00:30Z is off the 1h grid" in str(
        first_defect(frame, report, ignore=("ohlc_violations", "negative_volume"))
    )
    clean = validate_candles(hourly, "1h", now=NOW + pd.Timedelta(days=1))
    assert clean.ok and clean.first_rows == {} and first_defect(hourly, clean) is None


# ----------------------------------------------------------------------- BrokerSettings
@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"stake": 2.0}, "invalid --stake 2.0: use a fraction of equity in (0, 1], such as 0.95"),
        ({"stake": -0.5}, "invalid --stake -0.5"),
        ({"cash": 1e308}, "invalid --cash 1e+308: use a positive amount up to 1e15, such as 10000"),
        ({"cash": float("nan")}, "invalid --cash nan"),
        ({"cash": float("-inf")}, "invalid --cash -inf"),
        ({"commission": 1.0}, "invalid --commission 1.0: use a fraction of the notional in [0, 1)"),
        ({"slippage": -1e-9}, "invalid --slippage -1e-09"),
        ({"cash": "lots"}, "invalid --cash 'lots'"),
    ],
)
def test_broker_refuses_out_of_range_settings_in_one_line(
    settings: dict[str, object], line: str
) -> None:
    with pytest.raises(BrokerSettingError) as error:
        BrokerSettings(**settings)
    assert isinstance(error.value, InvalidInputError)  # the CLI prints it as one line
    assert str(error.value).startswith(line) and "\n" not in str(error.value)


def test_broker_bounds_are_inclusive_where_documented() -> None:
    edge = BrokerSettings(cash=MAX_CASH, commission=0.0, slippage=0.0, stake=1.0)
    assert edge.kwargs() == {"cash": 1e15, "commission": 0.0, "slippage": 0.0, "stake": 1.0}
    assert BrokerSettings() == BrokerSettings(
        cash=10_000.0, commission=0.001, slippage=0.0, stake=0.95
    )
    assert ResearchBroker is BrokerSettings  # research code shares the one model


def test_broker_error_names_the_config_field() -> None:
    with pytest.raises(BrokerSettingError) as error:
        BrokerSettings(stake=2)
    assert error.value.field == "stake"
    assert error.value.field_message == (
        "stake: 2 is invalid: use a fraction of equity in (0, 1], such as 0.95"
    )


def test_every_engine_uses_the_broker_check(hourly: pd.DataFrame) -> None:
    """Direct callers of the engines and the sweep get the same line as the CLI."""
    for run in (
        lambda: run_backtest(hourly, "rsi", None, interval="1h", stake=2.0),
        lambda: run_fast_backtest(hourly, "rsi", None, interval="1h", stake=2.0),
        lambda: run_sweep(hourly, "rsi", [{}], interval="1h", stake=2.0),
    ):
        with pytest.raises(BrokerSettingError, match=r"invalid --stake 2.0: use a fraction"):
            run()


# -------------------------------------------------------------------------------- seed
def test_a_negative_seed_is_refused_by_the_search_model() -> None:
    with pytest.raises(ValidationError, match="-1 is negative; use a seed of 0 or more"):
        SearchSpec(strategy="rsi", grid={"period": [7, 14]}, method="random", samples=1, seed=-1)
    spec = SearchSpec(
        strategy="rsi", grid={"period": [7, 14, 21]}, method="random", samples=2, seed=0
    )
    assert len(parameter_sets(spec)) == 2
