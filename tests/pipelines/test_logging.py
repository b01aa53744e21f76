"""Inside a run, the core's log records carry that run's id."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from dagster import DagsterInstance, materialize

from cryptota_core.logs import bind_run_id, configure_logging, current_run_id
from cryptota_core.settings import Settings
from cryptota_pipelines.partitions import partition_key
from cryptota_pipelines.resources import resources_from_settings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    bind_run_id(None)
    configure_logging()


def test_core_records_of_a_run_carry_its_run_id(
    settings: Settings,
    instance_with_symbols: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from cryptota_pipelines.defs.ingestion.assets import candles_1m

    monkeypatch.setenv("CRYPTOTA_LOG_FORMAT", "json")
    result = materialize(
        [candles_1m],
        instance=instance_with_symbols,
        resources=resources_from_settings(settings),
        partition_key=partition_key("2024-01-05", "BTCUSDT"),
    )
    assert result.success
    assert current_run_id() == result.run_id
    logging.getLogger("cryptota_core.test").warning("after the run")
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    assert any(f'"run_id": "{result.run_id}"' in line for line in lines), lines[-5:]
