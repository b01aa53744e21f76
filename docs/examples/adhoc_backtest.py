"""The old service's three calls — submit a backtest, poll its status, fetch its results — against
a Dagster webserver.

    python docs/examples/adhoc_backtest.py --strategy rsi --symbol BTCUSDT --interval 15m \\
        --start "$(date -u -d '7 days ago' +%F)" --end "$(date -u +%F)" \\
        --cash 10000 --commission 0.001 --params '{"period": 14, "oversold": 30, "overbought": 70}'

(the last seven days, inside the 30 that ``make run`` ingests).

1. **submit**: ``DagsterGraphQLClient.submit_job_execution("adhoc_backtest_job", run_config=...)``
   queues a run and returns its id (a bad run config is refused here: one line naming the field);
2. **status**: ``get_run_status(run_id)`` until the run has ended;
3. **results**: ``cryptota results RUN_ID --json``, the run's stored result as the
   ``cryptota backtest --json`` object (DESIGN §2) — this needs the store's settings
   (``CRYPTOTA_DATABASE_URL``) where the script runs; the same object is also the ``result``
   metadata of the run's ``adhoc_backtest`` step in the UI.

The result goes to stdout, progress to stderr. A refused config or a failed run prints one line,
``error: ...``, and exits 1. Only the webserver's address is needed for calls 1 and 2
(``--host``/``--port``, default localhost:3000).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from typing import Any

from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

JOB = "adhoc_backtest_job"
OP = "adhoc_backtest"
ENDED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

_FAILURE = """
query Failure($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { error { message } failureMetadata { description } }
        ... on RunFailureEvent { message }
      }
    }
  }
}
"""


class BacktestError(Exception):
    """A backtest that was refused or failed: its message is one line for the user."""


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The job's run config: the ``adhoc_backtest`` op's config (AdhocBacktestConfig)."""
    config: dict[str, Any] = {
        "strategy": args.strategy,
        "symbol": args.symbol,
        "interval": args.interval,
        "start": args.start,
        "end": args.end,
        "cash": args.cash,
        "commission": args.commission,
        "params": json.loads(args.params),
        "allow_partial": args.allow_partial,
    }
    return {"ops": {OP: {"config": config}}}


def submit(client: DagsterGraphQLClient, config: dict[str, Any]) -> str:
    """Call 1: queue the run; a config the job's schema refuses is one line naming the field."""
    try:
        return client.submit_job_execution(JOB, run_config=config)
    except DagsterGraphQLClientError as e:
        kind, body = (*e.args, None)[:2]
        if kind == "RunConfigValidationInvalid" and body:
            first = body[0]
            where = ".".join(str(p) for p in first.get("path") or [])
            at = f" at {where}" if where else ""
            raise BacktestError(f"run config refused{at}: {first['message']}") from None
        raise BacktestError(f"{kind}: {body if body is not None else e}") from None


def wait(client: DagsterGraphQLClient, run_id: str, timeout: float, poll: float) -> None:
    """Call 2: poll the run's status until it has ended; a failure is its one-line reason."""
    deadline = time.monotonic() + timeout
    status = client.get_run_status(run_id)
    while status not in ENDED:
        if time.monotonic() > deadline:
            raise BacktestError(f"run {run_id} is still {status.value} after {timeout:.0f} s")
        print(f"run {run_id}: {status.value}", file=sys.stderr)
        time.sleep(poll)
        status = client.get_run_status(run_id)
    if status != DagsterRunStatus.SUCCESS:
        raise BacktestError(f"run {run_id} ended in {status.value}: {failure(client, run_id)}")


def failure(client: DagsterGraphQLClient, run_id: str) -> str:
    """Why a run failed: its step's failure description (the op's one line), else the error."""
    data = client._execute(_FAILURE, {"runId": run_id})  # no public call for a run's events
    reasons = []
    for event in data["logsForRun"].get("events", []):
        if event["__typename"] == "ExecutionStepFailureEvent":
            described = (event.get("failureMetadata") or {}).get("description")
            reasons.append(described or event["error"]["message"].strip().splitlines()[-1])
        elif event["__typename"] == "RunFailureEvent" and not reasons:
            reasons.append(event["message"])
    return reasons[0] if reasons else "see the run in the Dagster UI"


def results(run_id: str) -> list[dict[str, Any]]:
    """Call 3: ``cryptota results RUN_ID --json`` (one JSON object per stored result)."""
    command = shutil.which("cryptota")
    argv = [command] if command else [sys.executable, "-m", "cryptota_core.cli"]
    done = subprocess.run([*argv, "results", run_id, "--json"], capture_output=True, text=True)
    if done.returncode:
        raise BacktestError(done.stderr.strip().removeprefix("error: "))
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost", help="Dagster webserver host.")
    parser.add_argument("--port", type=int, default=3000, help="Dagster webserver port.")
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--interval", default="1h", help="Timeframe: 1m, 15m, 1h, 4h, 1d ...")
    parser.add_argument("--start", required=True, help="UTC, inclusive.")
    parser.add_argument("--end", required=True, help="UTC, exclusive.")
    parser.add_argument("--cash", type=float, default=10_000.0)
    parser.add_argument("--commission", type=float, default=0.001)
    parser.add_argument("--params", default="{}", help="Strategy parameters as a JSON object.")
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="Backtest the stored part of a window the store does not cover (else refused).",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds to wait for it.")
    parser.add_argument("--poll", type=float, default=2.0, help="Seconds between status polls.")
    args = parser.parse_args(argv)
    client = DagsterGraphQLClient(args.host, port_number=args.port)
    try:
        run_id = submit(client, run_config(args))
        print(f"submitted run {run_id}", file=sys.stderr)
        wait(client, run_id, args.timeout, args.poll)
        for result in results(run_id):
            print(json.dumps(result))
    except (BacktestError, DagsterGraphQLClientError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
