"""Log records carry the run id; JSON lines are parseable and hold the structured fields."""

from __future__ import annotations

import json
import logging

import pytest

from cryptota_core.logs import bind_run_id, configure_logging


@pytest.fixture(autouse=True)
def _unbind() -> None:
    bind_run_id(None)
    yield
    bind_run_id(None)
    configure_logging()


def test_json_lines_carry_run_id_and_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    bind_run_id("0f1e2d3c-run")
    logging.getLogger("cryptota_core.test").info(
        "stored %d candles", 1440, extra={"symbol": "BTCUSDT"}
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["run_id"] == "0f1e2d3c-run"
    assert line["message"] == "stored 1440 candles"
    assert line["symbol"] == "BTCUSDT"
    assert line["level"] == "INFO"


def test_console_lines_show_the_run_only_inside_a_run(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "console")
    log = logging.getLogger("cryptota_core.test")
    log.warning("outside")
    bind_run_id("abcdef0123456789")
    log.warning("inside")
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-2] == "WARNING cryptota_core.test: outside"
    assert lines[-1] == "WARNING cryptota_core.test [run abcdef01]: inside"
