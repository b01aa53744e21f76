"""Logging set-up for CryptoTA processes (CLI, Dagster code server and run workers, benchmarks).

The core logs through the standard ``logging`` module with structured fields passed as ``extra``;
this module decides how records look: readable console lines locally, JSON lines in production
(``CRYPTOTA_LOG_FORMAT=json``). Every record carries the orchestrator's run id once one is bound
(:func:`bind_run_id`, or a lookup installed once with :func:`use_run_id_source`: the Dagster code
location's asks Dagster which step is running), so a line in a log aggregator leads back to its
run. Inside Dagster the same records also reach the run's event log through ``python_logs`` in
``dagster.yaml``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "run_id"}
_run_id: str | None = None
_run_id_source: Callable[[], str | None] | None = None


def bind_run_id(run_id: str | None) -> None:
    """Stamp ``run_id`` on every CryptoTA log record from now on in this process (a Dagster run
    worker runs one run; in-process runs rebind it per run)."""
    global _run_id
    _run_id = run_id


def use_run_id_source(source: Callable[[], str | None] | None) -> None:
    """Ask ``source`` for the run id of each record that no :func:`bind_run_id` covers. An
    orchestrator installs it once per process, so no step can forget to bind its id and none
    can leave it bound after it ends (the source answers None outside a run)."""
    global _run_id_source
    _run_id_source = source


def current_run_id() -> str | None:
    """The run id bound by :func:`bind_run_id`, else the one the installed source reports."""
    if _run_id is not None or _run_id_source is None:
        return _run_id
    return _run_id_source()


class RunIdFilter(logging.Filter):
    """Adds ``record.run_id`` (None outside a run) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            record.run_id = current_run_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, run id, message and every ``extra``
    field."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "run_id": getattr(record, "run_id", None),
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class ConsoleFormatter(logging.Formatter):
    """``LEVEL logger [run abcd1234]: message`` — the run part only inside a run."""

    def format(self, record: logging.LogRecord) -> str:
        run_id = getattr(record, "run_id", None)
        run = f" [run {run_id[:8]}]" if run_id else ""
        line = f"{record.levelname} {record.name}{run}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_FILTER = RunIdFilter()


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Route ``cryptota_core`` records to stderr in the chosen format (idempotent)."""
    logger = logging.getLogger("cryptota_core")
    logger.setLevel(level)
    for handler in list(logger.handlers):
        if getattr(handler, "_cryptota", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._cryptota = True  # type: ignore[attr-defined]
    # On the handler, not the logger: logger filters skip records propagated from child loggers.
    handler.addFilter(_FILTER)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    logger.addHandler(handler)
