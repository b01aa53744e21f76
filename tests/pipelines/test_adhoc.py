"""The ad-hoc backtest workflow end to end: docs/examples/adhoc_backtest.py submits
adhoc_backtest_job to a real webserver (GraphQL), the daemon dequeues it, the user-code server
runs it, the script polls its status and prints the stored result through `cryptota results`.
The result equals `cryptota backtest --json` of the same request; a bad run config is refused
with one line naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pandas as pd
import pytest

from cryptota_core.app.ingest import ingest
from cryptota_core.cli import main as cryptota
from cryptota_core.market.intervals import INTERVAL_MS
from cryptota_core.market.sources.synthetic import SyntheticSource
from cryptota_core.storage.candle_store import CandleStore
from cryptota_pipelines.defs.adhoc.jobs import AdhocBacktestConfig, Interval
from tests.pipelines.conftest import temporary_database
from tests.pipelines.deployment import REPO, Deployment, dagster_deployment

pytestmark = pytest.mark.postgres

SCRIPT = REPO / "docs" / "examples" / "adhoc_backtest.py"
START, END = "2024-01-01", "2024-01-11"
PARAMS = {"period": 14, "oversold": 30, "overbought": 70}
REQUEST = [
    "--strategy", "rsi", "--symbol", "BTCUSDT", "--interval", "15m",
    "--start", START, "--end", END, "--cash", "5000", "--commission", "0.00075",
]  # fmt: skip

_RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) { ... on Runs { results { runId status } } }
}
"""

_RESULT_METADATA = """
query Output($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        ... on ExecutionStepOutputEvent {
          metadataEntries { label ... on JsonMetadataEntry { jsonString } }
        }
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def candles_url(postgres_admin_url: str) -> Iterator[str]:
    """A store holding ten days of BTCUSDT 1m candles (the ad-hoc job ingests nothing)."""
    with temporary_database(postgres_admin_url) as url:
        store = CandleStore.from_url(url)
        ingest(
            store,
            SyntheticSource(),
            ["BTCUSDT"],
            "1m",
            pd.Timestamp(START, tz="UTC"),
            pd.Timestamp(END, tz="UTC"),
        )
        store.engine.dispose()
        yield url


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str, candles_url: str
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("adhoc")
    cryptota_env = {
        "CRYPTOTA_HOME": str(root / "cryptota"),
        "CRYPTOTA_DATABASE_URL": candles_url,
        "CRYPTOTA_SOURCE": "synthetic",
        "CRYPTOTA_SYMBOLS": "BTCUSDT",
    }
    with (
        temporary_database(postgres_admin_url) as storage_url,
        dagster_deployment(root, storage_url=storage_url, cryptota_env=cryptota_env) as running,
    ):
        yield running


def _script(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    """The example script as a user runs it: the webserver's port, the store's URL for call 3."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--port", str(deployment.web_port), "--poll", "0.5", *args],
        env=deployment.env,
        cwd=deployment.home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode not in (0, 1):
        print(done.stdout, done.stderr)
        for name in deployment.processes:
            print(f"----- {name} -----\n{deployment.log(name)[-4000:]}")
    return done


def _runs(deployment: Deployment) -> list[dict[str, Any]]:
    data = deployment.graphql(_RUNS, {"filter": {"pipelineName": "adhoc_backtest_job"}})
    return list(data["runsOrError"]["results"])


def test_submit_poll_and_fetch_a_backtest(
    deployment: Deployment,
    candles_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    done = _script(deployment, *REQUEST, "--params", json.dumps(PARAMS))
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    result = json.loads(line)
    assert result["strategy"] == "rsi" and result["params"] == PARAMS
    assert result["interval"] == "15m" and result["bars"] == 10 * 96
    assert result["engine"] == "fast"  # the fast engine implements rsi
    assert result["cash"] == 5000 and result["commission"] == 0.00075
    assert result["trades"], "ten days of 15m candles should give RSI trades"

    # The run the script submitted went through the queue to success and carries the same JSON.
    run_id = done.stderr.split("submitted run ")[1].split()[0]
    assert {"runId": run_id, "status": "SUCCESS"} in _runs(deployment)
    events = deployment.graphql(_RESULT_METADATA, {"runId": run_id})["logsForRun"]["events"]
    entries = {m["label"]: m for e in events for m in e.get("metadataEntries", [])}
    assert json.loads(entries["result"]["jsonString"]) == result

    # The same request on the CLI gives the same numbers (the fast engine there too).
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", candles_url)
    request = [arg for arg in REQUEST if arg != "--commission" and arg != "0.00075"]
    assert (
        cryptota(
            [
                "backtest",
                *request,
                "--commission",
                "0.00075",
                "--params",
                json.dumps(PARAMS),
                "--engine",
                "fast",
                "--json",
            ]
        )
        == 0
    )
    local = json.loads(capsys.readouterr().out)
    # Equal but for the last bit of a metric or two: `stability` (a least-squares fit) differs
    # in the 16th digit between processes on the same candles.
    assert {k: v for k, v in local.items() if k != "metrics"} == {
        k: v for k, v in result.items() if k != "metrics"
    }
    assert local["metrics"].keys() == result["metrics"].keys()
    for name, value in result["metrics"].items():
        assert local["metrics"][name] == (value if value is None else pytest.approx(value)), name


def test_an_unknown_strategy_parameter_fails_the_run_naming_the_field(
    deployment: Deployment,
) -> None:
    done = _script(deployment, *REQUEST, "--params", json.dumps({**PARAMS, "perod": 10}))
    assert done.returncode == 1
    (message,) = done.stderr.strip().splitlines()[-1:]
    assert message.startswith("error: run ") and " ended in FAILURE: params: " in message, message
    assert "'perod'" in message and "period" in message  # the bad key, and the closest good one
    assert "Traceback" not in done.stderr


def test_a_bad_interval_is_refused_at_launch_naming_the_field(deployment: Deployment) -> None:
    before = len(_runs(deployment))
    request = [("7m" if arg == "15m" else arg) for arg in REQUEST]
    done = _script(deployment, *request, "--params", json.dumps(PARAMS))
    assert done.returncode == 1
    (message,) = done.stderr.strip().splitlines()
    assert message.startswith("error: run config refused: "), message
    assert "config:interval not in enum" in message and "got 7m" in message
    assert len(_runs(deployment)) == before  # nothing was queued


def test_bad_dates_fail_the_run_naming_the_field(deployment: Deployment) -> None:
    request = [(END if arg == START else START if arg == END else arg) for arg in REQUEST]
    done = _script(deployment, *request)
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert " ended in FAILURE: end: " in message and "is not after start" in message, message


def test_a_window_the_store_does_not_cover_fails_the_run_unless_partial_is_allowed(
    deployment: Deployment,
) -> None:
    """The store holds ten days; a month asked for is refused naming the covered range (no
    silent ten-day backtest), and with allow_partial the run uses, and says, the ten days."""
    month = [("2024-02-01" if arg == END else arg) for arg in REQUEST]
    done = _script(deployment, *month, "--params", json.dumps(PARAMS))
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert " ended in FAILURE: BTCUSDT 15m (synthetic): the store has 960 of the 2,976" in message
    assert "spanning [2024-01-01T00:00Z, 2024-01-11T00:00Z)" in message, message
    assert "cryptota ingest --source synthetic --symbols BTCUSDT" in message

    partial = _script(deployment, *month, "--params", json.dumps(PARAMS), "--allow-partial")
    assert partial.returncode == 0, partial.stderr
    result = json.loads(partial.stdout)
    assert result["bars"] == 960
    assert (result["start"], result["end"]) == ("2024-01-01T00:00:00Z", "2024-01-11T00:00:00Z")


def test_the_interval_enum_is_every_supported_interval() -> None:
    assert list(get_args(Interval)) == list(INTERVAL_MS)
    assert AdhocBacktestConfig.model_fields["interval"].default == "1h"


def test_the_example_runs_without_a_server_as_one_line(tmp_path: Path) -> None:
    """No webserver at the address: one line, exit 1, no traceback."""
    from tests.services import free_port

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--port", str(free_port()), *REQUEST],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
