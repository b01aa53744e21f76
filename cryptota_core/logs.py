"""Logging set-up for CryptoTA processes (CLI, Dagster code server, benchmarks).

The core logs through the standard ``logging`` module with structured fields passed as ``extra``;
this module decides how records look: readable console lines locally, JSON lines in production
(``CRYPTOTA_LOG_FORMAT=json``). Inside Dagster runs the same records are captured into the event log
via ``python_logs`` in ``dagster.yaml``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Route ``cryptota_core`` records to stderr in the chosen format (idempotent)."""
    logger = logging.getLogger("cryptota_core")
    logger.setLevel(level)
    for handler in list(logger.handlers):
        if getattr(handler, "_cryptota", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._cryptota = True  # type: ignore[attr-defined]
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    logger.addHandler(handler)
