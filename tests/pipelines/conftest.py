"""Dagster fixtures: a persistent temporary instance, the code location's definitions configured
for a throwaway PostgreSQL candle store and the synthetic market, and that store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dagster import DagsterInstance, Definitions, instance_for_test

from cryptota_core.settings import Settings, load_settings
from cryptota_core.storage.candle_store import CandleStore
from tests.conftest import fresh_database

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def pytest_configure(config: pytest.Config) -> None:
    """Dagster marks ``backfill_policy`` and ``pool`` beta/preview; we use them knowingly."""
    config.addinivalue_line("filterwarnings", "ignore::dagster.BetaWarning")
    config.addinivalue_line("filterwarnings", "ignore::dagster.PreviewWarning")
    # Dagster's own multi-partition run tags (dagster/partition/<dimension>) trip its tag linter.
    config.addinivalue_line("filterwarnings", "ignore:Non-compliant tag keys:DeprecationWarning")


@pytest.fixture
def settings(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Production-shaped settings: the store URL from the environment, synthetic source."""
    monkeypatch.setenv("CRYPTOTA_DATABASE_URL", postgres_url)
    monkeypatch.setenv("CRYPTOTA_SOURCE", "synthetic")
    monkeypatch.setenv("CRYPTOTA_SYMBOLS", ",".join(SYMBOLS))
    return load_settings()


@pytest.fixture
def defs(settings: Settings) -> Definitions:
    from cryptota_pipelines.definitions import build_defs  # after the warning filters are set

    return build_defs(settings)


@pytest.fixture
def store(settings: Settings) -> Iterator[CandleStore]:
    candle_store = CandleStore.from_url(settings.resolved_database_url)
    yield candle_store
    candle_store.engine.dispose()


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """A persistent temporary instance (an ephemeral one cannot evaluate sensors)."""
    with instance_for_test() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def instance_with_symbols(instance: DagsterInstance) -> DagsterInstance:
    instance.add_dynamic_partitions("symbols", SYMBOLS)
    return instance


temporary_database = fresh_database
"""A new empty database on the test server for longer than one test (the root conftest's
``postgres_url`` is per test); dropped on exit."""
