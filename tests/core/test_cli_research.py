"""`cryptota optimize` and `cryptota walk-forward`: the JSON contract, storage with lineage, and
one clear line (nothing stored) for every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, func, select

from cryptota_core.cli import main
from cryptota_core.storage.schema import optimization_runs, walk_forward_windows

GRID = '{"period":[7,14,21],"oversold":[20,25,30],"overbought":[70,75,80]}'
WINDOW = ["--symbol", "BTCUSDT", "--start", "2024-01-01", "--end", "2024-03-01"]


@pytest.fixture
def stored(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """Two months of synthetic 1m candles in a SQLite store (read back as 1h)."""
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", sqlite_url)
    args = [
        "ingest",
        "--source",
        "synthetic",
        "--symbols",
        "BTCUSDT",
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-01",
    ]
    assert main(args) == 0
    capsys.readouterr()
    return sqlite_url


def _rows(url: str, table: object) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(table)).scalar_one()  # type: ignore[arg-type]
    engine.dispose()
    return int(count)


def test_optimize_json_contract_and_stored_once(
    stored: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    heatmap = tmp_path / "heatmap.png"
    args = ["optimize", "--strategy", "rsi", "--grid", GRID, *WINDOW, "--top", "3", "--json"]
    reference = ["--recheck", "3", "--recheck-engine", "backtrader"]
    assert main([*args, *reference, "--heatmap", str(heatmap)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["strategy"] == "rsi" and payload["objective"] == "sharpe_ratio"
    assert payload["combinations"] == 27 and payload["bars"] == 60 * 24
    assert payload["best"]["slug"] == payload["top"][0]["slug"]
    assert payload["best"]["engine"] == "backtrader"
    assert [r["reproduced"] for r in payload["rechecks"]] == [True, True, True]
    assert {r["engine"] for r in payload["rechecks"]} == {"backtrader"}
    for key in (
        "psr",
        "dsr",
        "dsr_significant",
        "pbo",
        "n_trials",
        "expected_max_sharpe_annualised",
    ):
        assert key in payload["statistics"]
    assert heatmap.read_bytes()[:4] == b"\x89PNG"
    assert main(args) == 0  # the same search again replaces, never duplicates
    assert _rows(stored, optimization_runs) == 1


def test_optimize_csv_prints_table_and_stores_nothing(
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cryptota_core.market.binance_csv import write_kline_csv
    from cryptota_core.market.sources.synthetic import SyntheticSource

    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", sqlite_url)
    frame = SyntheticSource(seed=4).fetch(
        "BTCUSDT", "1h", pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC")
    )
    path = tmp_path / "BTCUSDT-1h.csv"
    write_kline_csv(frame, path, interval="1h")
    assert main(["optimize", "--strategy", "rsi", "--csv", str(path), "--top", "2"]) == 0
    printed = capsys.readouterr().out
    assert "deflated Sharpe ratio" in printed and "probability of backtest overfitting" in printed
    # by default the winner alone is re-checked, on the fast engine, and the output says so
    assert printed.count("reproduced") == 1
    assert "re-check: the winner re-run set by set on the fast engine" in printed


def test_min_trades_and_significance_period_reach_the_statistics(
    stored: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["optimize", "--strategy", "rsi", "--grid", GRID, *WINDOW, "--recheck", "0", "--json"]
    assert main([*base, "--min-trades", "0", "--significance-period", "1h"]) == 0
    every = json.loads(capsys.readouterr().out)["statistics"]
    assert every["min_trades"] == 0 and every["eligible_sets"] == 27
    assert every["significance_period"] == "1h" and every["effective_observations"] > 1_000
    assert main([*base, "--min-trades", "8"]) == 0
    strict = json.loads(capsys.readouterr().out)
    assert strict["statistics"]["min_trades"] == 8
    assert strict["statistics"]["eligible_sets"] < 27
    assert strict["statistics"]["significance_period"] == "1d"  # the default
    assert all(row["trade_count"] >= 8 for row in strict["top"])


def test_walk_forward_json_and_stored(stored: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "walk-forward",
        "--strategy",
        "rsi",
        "--grid",
        GRID,
        *WINDOW,
        "--windows",
        "4",
        "--json",
    ]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["windows"]) == 4
    assert payload["windows"][0]["out_sample_start"] == payload["windows"][0]["in_sample_end"]
    assert "walk_forward_efficiency" in payload["statistics"]
    assert 0 <= payload["statistics"]["walk_forward_efficiency_window_count"] <= 4
    window = payload["windows"][0]
    assert {"in_sample_annual_log_return", "out_sample_annual_log_return"} <= set(window)
    assert "annual_return" not in json.dumps(payload).replace("annual_log_return", "")
    assert main(args) == 0
    assert _rows(stored, walk_forward_windows) == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--grid", "{}"], "--grid: the grid must be a non-empty JSON object"),
        (["--grid", '{"period": []}'], "empty list"),
        (
            [
                "--grid",
                json.dumps(
                    {
                        "period": list(range(2, 202)),
                        "oversold": list(range(1, 100)),
                        "overbought": list(range(1, 100)),
                    }
                ),
            ],
            "1,960,200 combinations, more than --max-sets 100,000",
        ),
        (
            ["--grid", '{"oversold": [60, 70], "overbought": [40, 50]}'],
            "every combination breaks a rule",
        ),
        (["--grid", '{"perod": [7]}'], "did you mean 'period'"),
        (["--grid", "nope"], "not valid JSON"),
        (["--objective", "luck"], "unknown objective"),
        (["--method", "random"], "needs --samples"),
        (["--min-trades", "-1"], "invalid --min-trades -1"),
        (["--significance-period", "2d"], "--significance-period"),
    ],
)
def test_bad_search_is_one_line_and_stores_nothing(
    stored: str, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["optimize", "--strategy", "rsi", *WINDOW, *extra]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert _rows(stored, optimization_runs) == 0


def test_too_little_data_for_the_walk_forward_split(
    stored: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "walk-forward",
        "--strategy",
        "rsi",
        "--symbol",
        "BTCUSDT",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-05",
    ]
    assert main(args) == 1
    assert "too little data for the split" in capsys.readouterr().err
    assert _rows(stored, walk_forward_windows) == 0


BEYOND = ["--symbol", "BTCUSDT", "--start", "2024-01-01", "--end", "2024-07-01"]
"""Six months asked for; the store holds January and February."""


@pytest.mark.parametrize(
    "command",
    [
        ["backtest", "--strategy", "rsi", "--json"],
        ["optimize", "--strategy", "rsi", "--grid", GRID, "--json"],
        ["walk-forward", "--strategy", "rsi", "--grid", GRID, "--json"],
    ],
    ids=["backtest", "optimize", "walk-forward"],
)
def test_a_window_the_store_does_not_cover_is_one_line_and_stores_nothing(
    stored: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, *BEYOND]) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(
        "error: BTCUSDT 1h (synthetic): the store has 1,440 of the 4,368 candles of "
        "[2024-01-01T00:00Z, 2024-07-01T00:00Z), spanning [2024-01-01T00:00Z, 2024-03-01T00:00Z)"
    )
    assert "cryptota ingest --source synthetic --symbols BTCUSDT --start 2024-01-01" in lines[0]
    assert captured.out == ""
    assert _rows(stored, optimization_runs) == 0 and _rows(stored, walk_forward_windows) == 0


def test_allow_partial_runs_on_the_stored_window_and_says_so(
    stored: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", "--strategy", "rsi", "--json", "--allow-partial", *BEYOND]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["bars"] == 1_440
    assert (result["start"], result["end"]) == ("2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z")
    assert "partial window allowed, using [2024-01-01T00:00Z, 2024-03-01T00:00Z)" in captured.err

    assert main(["optimize", "--strategy", "rsi", "--grid", GRID, "--allow-partial", *BEYOND]) == 0
    assert _rows(stored, optimization_runs) == 1
