"""Issue 13, bad input that was not clean: each of these once ended in a traceback or was
backtested silently. Each must now exit non-zero with exactly one line on stderr naming what is
wrong, before any candle is read from the store and with nothing stored."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, func, select

from cryptota_core.cli import main
from cryptota_core.market.binance_csv import write_kline_csv
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.storage.schema import optimization_runs, walk_forward_windows

START = pd.Timestamp("2024-01-01", tz="UTC")
UNREACHABLE = "postgresql://u:secret@127.0.0.1:1/db"
"""A store nothing can read: a command that reached it would fail with "cannot reach the
database" instead of the line the test expects, so the expected line proves nothing was read."""

COMMANDS = {
    "backtest": ["backtest", "--strategy", "rsi"],
    "optimize": ["optimize", "--strategy", "rsi"],
    "walk-forward": ["walk-forward", "--strategy", "rsi"],
}


@pytest.fixture(scope="module")
def hourly() -> pd.DataFrame:
    """Four weeks of hourly synthetic candles from 2024-01-01."""
    return SyntheticSource(seed=11).fetch("BTCUSDT", "1h", START, START + pd.Timedelta(days=28))


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    write_kline_csv(frame, path, interval="1h")
    return path


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line the command printed on stderr (and nothing on stdout)."""
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err
    return lines[0]


def _rows(url: str, table: object) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(table)).scalar_one()  # type: ignore[arg-type]
    engine.dispose()
    return int(count)


# ------------------------------------------------------------------------ future candles
@pytest.mark.parametrize("command", list(COMMANDS))
def test_future_candles_are_refused_naming_the_first(
    command: str, hourly: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file whose last candles open later than now, or have not closed yet: one line naming
    the first of them (the one opening this hour, which closes only at the next)."""
    last = hourly.index[-1]
    shift = pd.Timestamp.now(tz="UTC").floor("h") + pd.Timedelta(hours=3) - last
    future = hourly.set_axis(hourly.index + shift)
    path = _csv(tmp_path / "future.csv", future)
    before = pd.Timestamp.now(tz="UTC").floor("h")
    assert main([*COMMANDS[command], "--csv", str(path)]) == 1
    after = pd.Timestamp.now(tz="UTC").floor("h")
    line = _one_line(capsys)
    named = {f"the candle opening {t:%Y-%m-%dT%H:%M}Z has not closed yet" for t in (before, after)}
    assert any(n in line for n in named), line
    assert line.startswith(f"error: {path}: ")


# ------------------------------------------------------------------------- broken candles
def _broken(kind: str, frame: pd.DataFrame, path: Path) -> tuple[Path, str]:
    """A CSV with one broken candle (the 100th) and the words the error must contain."""
    bad = frame.copy()
    at = bad.index[100]
    when = f"the candle opening {at:%Y-%m-%dT%H:%M}Z"
    if kind == "high_below_low":
        bad.loc[at, "high"] = bad.loc[at, "low"] * 0.9
        return _csv(path, bad), f"{when} breaks low <= min(open, close) <= max(open, close) <= high"
    if kind == "negative_volume":
        bad.loc[at, "volume"] = -2.5
        return _csv(path, bad), f"{when} has volume -2.5; volume must be a number >= 0"
    if kind == "off_grid":
        moved = at + pd.Timedelta(minutes=7)
        bad = bad.set_axis(bad.index.where(bad.index != at, moved))
        return (
            _csv(path, bad),
            f"the candle opening {moved:%Y-%m-%dT%H:%M}Z is off the 1h grid",
        )
    assert kind == "duplicate"
    _csv(path, frame)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines[:101], lines[100], *lines[101:]]))  # row 100 twice
    return path, f"{when} appears more than once; remove the repeated rows"


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["high_below_low", "negative_volume", "off_grid", "duplicate"])
def test_broken_candles_are_refused_naming_the_first(
    kind: str,
    command: str,
    hourly: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What ingestion's validation refuses to store is refused as backtest input too."""
    path, message = _broken(kind, hourly, tmp_path / f"{kind}.csv")
    assert main([*COMMANDS[command], "--csv", str(path)]) == 1
    line = _one_line(capsys)
    assert line.startswith(f"error: {path}: {message}"), line
    assert line.endswith("(the only such candle)") or kind == "duplicate", line


def test_the_first_broken_candle_in_the_file_is_named_and_all_are_counted(
    hourly: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = hourly.copy()
    for i in (300, 50, 200):
        bad.iloc[i, bad.columns.get_loc("high")] = bad.iloc[i]["low"] / 2
    path = _csv(tmp_path / "three.csv", bad)
    assert main([*COMMANDS["backtest"], "--csv", str(path)]) == 1
    line = _one_line(capsys)
    assert f"the candle opening {hourly.index[50]:%Y-%m-%dT%H:%M}Z breaks" in line
    assert line.endswith("(the first of 3 such candles)"), line


def test_a_gap_is_an_outage_backtested_as_it_is_and_said(
    hourly: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing candles are what a real exchange outage leaves in a Binance export: the store
    records such gaps and never fills them, so the file is backtested on the candles it has,
    with a warning naming the gap."""
    path = _csv(tmp_path / "gap.csv", hourly.drop(hourly.index[400:410]))
    assert main([*COMMANDS["backtest"], "--csv", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["bars"] == len(hourly) - 10
    first, last = hourly.index[400], hourly.index[409]
    assert (
        f"1 gap, 10 missing 1h candles in all (the first from {first:%Y-%m-%dT%H:%M}Z to "
        f"{last:%Y-%m-%dT%H:%M}Z)" in captured.err
    )


def test_a_declared_interval_must_be_the_files_spacing(
    hourly: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An hourly file backtested as 1m would be 59 gaps an hour; as 4h, mostly off-grid."""
    path = _csv(tmp_path / "hourly.csv", hourly)
    for declared in ("1m", "4h"):
        assert main([*COMMANDS["backtest"], "--csv", str(path), "--interval", declared]) == 1
        line = _one_line(capsys)
        assert line == (
            f"error: --interval {declared} does not match {path}: its candles are mostly 1h "
            "apart; pass the file's interval or leave --interval out"
        )
    assert main([*COMMANDS["backtest"], "--csv", str(path), "--interval", "1h", "--json"]) == 0


def test_valid_unsorted_rows_are_still_sorted_not_refused(
    hourly: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Out-of-order rows were always sorted (safe to fix): the result is the sorted file's."""
    sorted_path = _csv(tmp_path / "sorted.csv", hourly)
    lines = sorted_path.read_text().splitlines(keepends=True)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("".join(lines[300:] + lines[:300]))
    assert main([*COMMANDS["backtest"], "--csv", str(sorted_path), "--json"]) == 0
    reference = json.loads(capsys.readouterr().out)
    assert main([*COMMANDS["backtest"], "--csv", str(shuffled), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trades"] == reference["trades"]


# ------------------------------------------------------------------------ broker settings
BROKER = [
    (["--stake", "2"], "invalid --stake 2.0: use a fraction of equity in (0, 1], such as 0.95"),
    (["--stake", "0"], "invalid --stake 0.0: use a fraction of equity in (0, 1]"),
    (["--cash", "1e308"], "invalid --cash 1e+308: use a positive amount up to 1e15"),
    (["--cash", "inf"], "invalid --cash inf: use a positive amount up to 1e15"),
    (["--cash", "nan"], "invalid --cash nan"),
    (["--cash", "0"], "invalid --cash 0.0"),
    (["--commission", "-0.001"], "invalid --commission -0.001: use a fraction of the notional"),
    (["--commission", "1"], "invalid --commission 1.0: use a fraction of the notional in [0, 1)"),
    (["--slippage", "-0.01"], "invalid --slippage -0.01: use a fraction of the price in [0, 1)"),
    (["--slippage", "1.5"], "invalid --slippage 1.5"),
]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(("flags", "message"), BROKER, ids=[" ".join(f) for f, _ in BROKER])
def test_bad_broker_settings_are_refused_before_any_candle_is_read(
    command: str,
    flags: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """From the store (unreachable here) and from a file that never ends: neither is opened."""
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", UNREACHABLE)
    window = ["--symbol", "BTCUSDT", "--start", "2024-01-01", "--end", "2024-02-01"]
    assert main([*COMMANDS[command], *window, *flags]) == 1
    assert _one_line(capsys).startswith(f"error: {message}")
    assert main([*COMMANDS[command], "--csv", "/dev/zero", *flags]) == 1
    assert _one_line(capsys).startswith(f"error: {message}")


def test_a_stake_of_one_is_still_accepted(
    hourly: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _csv(tmp_path / "hourly.csv", hourly)
    flags = ["--stake", "1", "--cash", "1e15", "--commission", "0", "--json"]
    assert main([*COMMANDS["backtest"], "--csv", str(path), *flags]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["stake"], result["cash"], result["commission"]) == (1.0, 1e15, 0.0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--recheck", "-2"], "error: --recheck -2: use 0 or more"),
        (["--recheck-engine", "vectorbt"], "'vectorbt' is not one of 'fast', 'backtrader'"),
    ],
)
def test_a_bad_recheck_is_refused_before_any_candle_is_read(
    flags: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", UNREACHABLE)
    window = ["--symbol", "BTCUSDT", "--start", "2024-01-01", "--end", "2024-02-01"]
    assert main([*COMMANDS["optimize"], *window, *flags]) != 0
    assert message in capsys.readouterr().err
    assert main([*COMMANDS["optimize"], "--csv", "/dev/zero", *flags]) != 0
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------ the seed
@pytest.mark.parametrize("command", ["optimize", "walk-forward"])
def test_a_negative_seed_is_refused_before_any_candle_is_read(
    command: str,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", sqlite_url)
    ingest = ["ingest", "--source", "synthetic", "--symbols", "BTCUSDT", "--interval", "1h"]
    assert main([*ingest, "--start", "2024-01-01", "--end", "2024-02-01"]) == 0
    capsys.readouterr()
    window = ["--symbol", "BTCUSDT", "--start", "2024-01-01", "--end", "2024-02-01"]
    random = ["--method", "random", "--samples", "3", "--seed", "-1"]
    assert main([*COMMANDS[command], *window, *random]) == 1
    message = "error: --seed: -1 is negative; use a seed of 0 or more, such as 0 or 42"
    assert _one_line(capsys) == message
    assert _rows(sqlite_url, optimization_runs) == 0
    assert _rows(sqlite_url, walk_forward_windows) == 0

    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", UNREACHABLE)  # nothing is read: no store needed
    assert main([*COMMANDS[command], *window, "--seed", "-1"]) == 1
    assert _one_line(capsys) == message


# ------------------------------------------------------------------------ endless inputs
@pytest.mark.parametrize("command", list(COMMANDS))
def test_dev_zero_is_refused_unread(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*COMMANDS[command], "--csv", "/dev/zero"]) == 1
    assert _one_line(capsys) == (
        "error: /dev/zero is a character device, not a regular file: pass the path of a "
        "Binance kline CSV file"
    )


@pytest.fixture
def endless_zeros(tmp_path: Path) -> Iterator[Path]:
    """A named pipe fed zeros for as long as anyone reads it (``mkfifo p; cat /dev/zero > p``)."""
    fifo = tmp_path / "zeros"
    os.mkfifo(fifo)

    def feed() -> None:
        try:
            with fifo.open("wb") as pipe:
                while True:
                    pipe.write(b"\0" * 65_536)
        except (BrokenPipeError, OSError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    yield fifo
    writer.join(timeout=1)  # a reader came and went: the writer ends on its broken pipe
    if writer.is_alive():  # nobody opened the pipe: open it once so the writer ends
        # Non-blocking: if the writer ended meanwhile, a blocking open would wait forever.
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    writer.join(timeout=10)


def test_a_pipe_of_zeros_fails_at_its_first_block(
    endless_zeros: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*COMMANDS["backtest"], "--csv", str(endless_zeros)]) == 1
    assert _one_line(capsys).startswith(f"error: {endless_zeros} is binary, not a CSV; expected")


def test_a_pipe_of_a_valid_csv_is_read(
    hourly: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--csv <(unzip -p file.zip)`` keeps working: a pipe is read, within the limit."""
    content = _csv(tmp_path / "hourly.csv", hourly).read_bytes()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(content,), daemon=True)
    writer.start()
    assert main([*COMMANDS["backtest"], "--csv", str(fifo), "--json"]) == 0
    writer.join(timeout=10)
    assert json.loads(capsys.readouterr().out)["bars"] == len(hourly)


def test_the_size_limit_comes_from_the_environment(
    hourly: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _csv(tmp_path / "hourly.csv", hourly)
    size = path.stat().st_size
    monkeypatch.setenv("CRYPTOTA_CSV_MAX_BYTES", str(size - 1))
    assert main([*COMMANDS["backtest"], "--csv", str(path)]) == 1
    assert _one_line(capsys) == (
        f"error: {path} holds more than {size - 1:,} bytes, the limit on a CSV "
        "(CRYPTOTA_CSV_MAX_BYTES; a year of 1m candles is about 60 MB): split the file or raise "
        "the limit"
    )
    monkeypatch.setenv("CRYPTOTA_CSV_MAX_BYTES", str(size))  # exactly the limit is fine
    assert main([*COMMANDS["backtest"], "--csv", str(path), "--json"]) == 0
