"""Dagster resources: thin, configurable handles on the core's stores, sources and cache.

Resources hold configuration only; the database, the sources and Redis are opened the first time
a run asks for them, never at import, so loading the code location touches neither the network
nor a database. The store and Redis URLs can carry a password, so in production they enter as
``EnvVar("CRYPTOTA_DATABASE_URL")`` and ``EnvVar("CRYPTOTA_REDIS_URL")`` and the UI shows the
variable's name, never its value.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import pandas as pd
from dagster import (
    ConfigurableIOManagerFactory,
    ConfigurableResource,
    EnvVar,
    InitResourceContext,
    InputContext,
    OutputContext,
    UPathIOManager,
)
from pydantic import Field, PrivateAttr
from sqlalchemy.engine import Engine
from upath import UPath

from cryptota_core.app.ingest import open_source
from cryptota_core.backtest.cache import DEFAULT_TTL_SECONDS, BacktestCache, NullCache
from cryptota_core.backtest.runs import (
    BacktestWindow,
    ParamSet,
    backtest_window,
    expand_param_grids,
)
from cryptota_core.market.sources.base import CandleSource
from cryptota_core.research.config import ResearchConfig
from cryptota_core.settings import Settings, load_settings
from cryptota_core.storage.candle_store import CandleStore
from cryptota_core.storage.research_store import ResearchStore
from cryptota_core.storage.results_store import ResultsStore
from cryptota_pipelines.run_logs import install_run_logging


class _Pooled(Protocol):
    """A store on a SQLAlchemy engine: what :class:`_StoreResource` closes."""

    engine: Engine


StoreT = TypeVar("StoreT", bound=_Pooled)


class _StoreResource(ConfigurableResource):
    """One store behind ``database_url``, opened on first use in a step and closed when it ends.

    The candle, results and research stores are opened and torn down the same way; each
    subclass's ``store()`` says only how its store is built, so none can forget to dispose of
    its connection pool and leave a finished run holding connections."""

    database_url: str = Field(description="SQLAlchemy URL of the store.")
    _store: Any = PrivateAttr(default=None)

    def _opened(self, open_store: Callable[[], StoreT]) -> StoreT:
        """The store, connected (and its tables created) on first use in this process."""
        if self._store is None:
            self._store = open_store()
        store: StoreT = self._store
        return store

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Close the connection pool when the step ends, so finished runs hold no connections."""
        if self._store is not None:
            self._store.engine.dispose()
            self._store = None


class CandleStoreResource(_StoreResource):
    """The candle store (TimescaleDB, PostgreSQL or SQLite) behind ``database_url``."""

    retention_days: int | None = Field(
        default=None,
        description="Candles older than this many days are purged by candle_retention_job; "
        "unset keeps everything.",
    )

    def store(self) -> CandleStore:
        """The store, connected (and its schema created) on first use in this process."""
        return self._opened(
            lambda: CandleStore.from_url(self.database_url, retention_days=self.retention_days)
        )


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


class ResultsStoreResource(_StoreResource):
    """The results store: backtest runs, their trades and equity curves, the leaderboard. Same
    database as the candle store."""

    retention_days: int | None = Field(
        default=None,
        description="Backtest runs created more than this many days ago are purged by "
        "results_retention_job; unset keeps everything.",
    )

    def store(self) -> ResultsStore:
        """The store, connected (and its tables created) on first use in this process."""
        return self._opened(lambda: ResultsStore.from_url(self.database_url))


class BacktestCacheResource(ConfigurableResource):
    """The backtest cache: Redis at ``redis_url``, or a no-op cache when it is unset. A cache
    that fails mid-run switches itself off; a backtest never fails because of it."""

    redis_url: str | None = Field(
        default=None, description="redis:// URL of the cache (CRYPTOTA_REDIS_URL); unset = off."
    )
    ttl_seconds: int = Field(
        default=DEFAULT_TTL_SECONDS, gt=0, description="How long a cached backtest lives."
    )
    _cache: BacktestCache | NullCache | None = PrivateAttr(default=None)

    def cache(self) -> BacktestCache | NullCache:
        """The cache (no connection until the first lookup); its hit counter covers this step."""
        if self._cache is None:
            self._cache = (
                BacktestCache.from_url(self.redis_url, ttl_seconds=self.ttl_seconds)
                if self.redis_url
                else NullCache()
            )
        return self._cache

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None


class BacktestConfigResource(ConfigurableResource):
    """What the pipeline backtests: the window, the parameter grids, and when to re-optimise."""

    interval: str = Field(default="1h", description="Candle interval (CRYPTOTA_BACKTEST_INTERVAL).")
    days: int = Field(
        default=30, gt=0, description="Window: the last N full UTC days (CRYPTOTA_BACKTEST_DAYS)."
    )
    strategy_grids: dict[str, dict[str, list[Any]]] = Field(
        default_factory=dict,
        description="Parameter grids per strategy (CRYPTOTA_STRATEGY_GRIDS); their combinations "
        "are the param_sets partitions.",
    )
    leaderboard_min_trades: int = Field(
        default=Settings.model_fields["leaderboard_min_trades"].default,
        ge=0,
        description="strategy_leaderboard ranks runs with fewer trades after the others and "
        "flags them (CRYPTOTA_LEADERBOARD_MIN_TRADES).",
    )
    reoptimize_after_days: int = Field(
        default=1,
        gt=0,
        description="reoptimization_sensor re-runs a symbol's backtests after this many new days "
        "of its candles inside the window.",
    )

    def window(self, today: pd.Timestamp | None = None) -> BacktestWindow:
        """The window backtests run on now (or on ``today``)."""
        return backtest_window(self.interval, self.days, today)

    def param_sets(self) -> list[ParamSet]:
        """Every valid combination of the grids (unknown strategies or parameters raise)."""
        return expand_param_grids(self.strategy_grids)


class JsonIOManager(ConfigurableIOManagerFactory):
    """Step outputs as JSON files, for jobs whose steps run in other processes or on other
    machines (``distributed_backtest_job`` on Celery workers).

    Dagster's default IO manager pickles outputs, and nothing here reads back a pickle (DESIGN
    §8); the values these jobs pass between steps are small plain data (which partitions a step
    covers), so JSON is enough and an output that is not JSON fails where it is written. The
    files live under the instance's storage directory, the volume the Dagster containers and
    the workers share (docker-compose.yml), unless ``base_dir`` says otherwise."""

    base_dir: str | None = Field(
        default=None, description="Where the files go; default: the instance's storage directory."
    )

    def create_io_manager(self, context: InitResourceContext) -> UPathIOManager:
        if self.base_dir:
            base = self.base_dir
        elif context.instance is not None:
            base = context.instance.storage_directory()
        else:
            base = tempfile.mkdtemp(prefix="cryptota-json-io-")
        return _JsonFiles(base_path=UPath(base))


class _JsonFiles(UPathIOManager):
    extension = ".json"

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        path.write_text(json.dumps(obj, allow_nan=False))

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        return json.loads(path.read_text())


class ResearchStoreResource(_StoreResource):
    """Optimisation runs, walk-forward windows and paper orders. Same database as the candles."""

    def store(self) -> ResearchStore:
        """The store, connected (and its tables created) on first use in this process."""
        return self._opened(lambda: ResearchStore.from_url(self.database_url))


class ResearchConfigResource(ConfigurableResource, ResearchConfig):
    """How the pipeline optimises, walks forward and checks drift: the core's
    :class:`~cryptota_core.research.config.ResearchConfig` as a resource. Its config keys,
    defaults and bounds are that model's fields (declared once, there); build it from the
    settings with ``ResearchConfigResource.from_settings``."""

    def config(self) -> ResearchConfig:
        """The core's research configuration."""
        return ResearchConfig(**self.model_dump())


def resources_from_settings(settings: Settings) -> dict[str, Any]:
    """The resources of the code location, configured from CryptoTA's settings, and the core's
    logging of this process set up from them (format, level, each step's run id).

    A store or Redis URL that came from the environment is passed as ``EnvVar`` (it may hold a
    password); the embedded default, a SQLite file under ``CRYPTOTA_HOME``, is not a secret."""
    database_url: str | EnvVar = (
        EnvVar("CRYPTOTA_DATABASE_URL") if settings.database_url else settings.resolved_database_url
    )
    # Not a resource: a resource runs only for the steps that request it (DESIGN §8).
    install_run_logging(settings.log_level, settings.log_format)
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
        # Both are Settings fields: CRYPTOTA_RESULTS_RETENTION_DAYS (unset keeps every result)
        # here and CRYPTOTA_REOPTIMIZE_AFTER_DAYS (default 1) in backtest_config below.
        "results_store": ResultsStoreResource(
            database_url=database_url,
            retention_days=settings.results_retention_days,
        ),
        "backtest_cache": BacktestCacheResource(
            redis_url=EnvVar("CRYPTOTA_REDIS_URL") if settings.redis_url else None,
            ttl_seconds=settings.cache_ttl_seconds,
        ),
        "research_store": ResearchStoreResource(database_url=database_url),
        "research_config": ResearchConfigResource.from_settings(settings),
        "backtest_config": BacktestConfigResource(
            interval=settings.backtest_interval,
            days=settings.backtest_days,
            strategy_grids=settings.strategy_grids,
            reoptimize_after_days=settings.reoptimize_after_days,
            leaderboard_min_trades=settings.leaderboard_min_trades,
        ),
        # Step outputs of the jobs whose steps run elsewhere (distributed_backtest_job).
        "json_io_manager": JsonIOManager(),
    }
