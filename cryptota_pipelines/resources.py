"""Dagster resources: thin, configurable handles on the core's store and candle sources.

Resources hold configuration only; the database and the sources are opened the first time a run
asks for them, never at import, so loading the code location touches neither the network nor a
database. The store URL can carry a password, so in production it enters as
``EnvVar("CRYPTOTA_DATABASE_URL")`` and the UI shows the variable's name, never its value.
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field, PrivateAttr

from cryptota_core.ingest import open_source
from cryptota_core.market.sources.base import CandleSource
from cryptota_core.settings import Settings, load_settings
from cryptota_core.storage.candle_store import CandleStore


class CandleStoreResource(ConfigurableResource):
    """The candle store (TimescaleDB, PostgreSQL or SQLite) behind ``database_url``."""

    database_url: str = Field(description="SQLAlchemy URL of the candle store.")
    retention_days: int | None = Field(
        default=None,
        description="Candles older than this many days are purged by candle_retention_job; "
        "unset keeps everything.",
    )
    _store: CandleStore | None = PrivateAttr(default=None)

    def store(self) -> CandleStore:
        """The store, connected (and its schema created) on first use in this process."""
        if self._store is None:
            self._store = CandleStore.from_url(self.database_url)
        return self._store

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Close the connection pool when the step ends, so finished runs hold no connections."""
        if self._store is not None:
            self._store.engine.dispose()
            self._store = None


class MarketSourceResource(ConfigurableResource):
    """Where candles come from, and which symbols make up the universe.

    Credentials (``BINANCE_API_KEY``/``SECRET``) are not fields: the core's settings read them
    from the environment as secret strings when the source is opened."""

    source_name: str = Field(
        description="binance, archive or synthetic (CRYPTOTA_SOURCE); auto means binance here."
    )
    synthetic_seed: int = Field(default=42, description="Seed of the synthetic market.")
    archive_url: str = Field(
        default="https://data.binance.vision", description="Base URL of the kline archive."
    )
    symbols: list[str] = Field(
        default_factory=list, description="The symbol universe (CRYPTOTA_SYMBOLS)."
    )

    def source(self) -> CandleSource:
        """Open the configured source (no network traffic until it fetches).

        ``auto`` opens Binance without the core's fallback to synthetic data: a scheduled run
        that silently ingested simulated candles would mark the day done while the Binance
        series stays empty. Here an unreachable Binance fails the run, which is retried and
        repaired, and every step of a run sees the same exchange."""
        name = "binance" if self.source_name == "auto" else self.source_name
        settings = load_settings(
            source=name, synthetic_seed=self.synthetic_seed, archive_url=self.archive_url
        )
        return open_source(name, settings)


def resources_from_settings(settings: Settings) -> dict[str, Any]:
    """The resources of the code location, configured from CryptoTA's settings.

    A store URL that came from the environment is passed as ``EnvVar`` (it may hold a password);
    the embedded default, a SQLite file under ``CRYPTOTA_HOME``, is not a secret."""
    database_url: str | EnvVar = (
        EnvVar("CRYPTOTA_DATABASE_URL") if settings.database_url else settings.resolved_database_url
    )
    return {
        "candle_store": CandleStoreResource(
            database_url=database_url, retention_days=settings.timescale_retention_days
        ),
        "market": MarketSourceResource(
            source_name=settings.source,
            synthetic_seed=settings.synthetic_seed,
            archive_url=settings.archive_url,
            symbols=list(settings.symbols),
        ),
    }
