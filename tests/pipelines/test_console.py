"""The ``cryptota`` console script (``cryptota_pipelines/console.py``): the command runs as
``main`` runs it, with the collector on for the command's own objects, and the start-up's
objects kept out of every collection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cryptota_core.market.binance_csv import write_kline_csv
from cryptota_core.market.sources.synthetic import generate_candles

PROBE = """
import gc, os, sys
from cryptota_pipelines import console

during = []


def seen(phase, info):
    # research.optimize is imported by the optimize command itself, never before it runs
    if phase == "start" and "cryptota_core.research.optimize" in sys.modules:
        during.append(info["generation"])


gc.callbacks.append(seen)
try:
    console.run()
finally:
    print(
        f"collections during the command {len(during)}; enabled {gc.isenabled()}; "
        f"frozen {gc.get_freeze_count()}; blas {os.environ.get('OPENBLAS_NUM_THREADS')}",
        file=sys.stderr,
    )
"""


def _console(args: list[str], tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {"CRYPTOTA_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", **extra}
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )


def _facts(stderr: str) -> dict[str, str]:
    line = next(s for s in stderr.splitlines() if s.startswith("collections during"))
    parts = line.removeprefix("collections during the command ").split("; ")
    return {"collections": parts[0], **dict(p.split(" ", 1) for p in parts[1:])}


def test_the_console_script_runs_the_command_with_the_collector_on(tmp_path: Path) -> None:
    csv = tmp_path / "candles.csv"
    frame = generate_candles("BTCUSDT", "1h", "2024-01-01", "2024-03-01", seed=5)
    write_kline_csv(frame, csv, interval="1h")
    grid = '{"period":[7,14],"oversold":[30],"overbought":[70]}'
    args = ["optimize", "--csv", str(csv), "--strategy", "rsi", "--grid", grid]
    done = _console([*args, "--min-trades", "0", "--json"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["combinations"] == 2
    assert result["rechecks"][0]["reproduced"] is True
    facts = _facts(done.stderr)
    assert int(facts["collections"]) > 0, "the collector stayed off during the command"
    assert facts["enabled"] == "True"
    # pandas, numba and pydantic alone leave some hundred thousand objects behind
    assert int(facts["frozen"]) > 100_000
    assert facts["blas"] == "1", "OpenBLAS keeps its threads off numba's cores"


def test_the_console_script_leaves_a_chosen_blas_thread_count(tmp_path: Path) -> None:
    done = _console(["results", "--help"], tmp_path, OPENBLAS_NUM_THREADS="3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _facts(done.stderr)["blas"] == "3"


def test_the_console_script_keeps_main_s_exit_code_and_one_line_error(tmp_path: Path) -> None:
    done = _console(
        ["optimize", "--csv", str(tmp_path / "missing.csv"), "--strategy", "rsi"], tmp_path
    )
    assert done.returncode == 1
    errors = [s for s in done.stderr.splitlines() if s.startswith("error:")]
    assert len(errors) == 1 and "missing.csv" in errors[0]
    assert "Traceback" not in done.stderr
