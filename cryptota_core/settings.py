"""All configuration, read once from the environment.

Every environment variable CryptoTA reads is a field here (``.env.example`` lists them). Invalid
values fail at start-up with one line naming the variable, instead of surfacing later as a
confusing error deep inside a run. Secrets are :class:`~pydantic.SecretStr`, so they never reach a
log line, a repr or an error message.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from cryptota_core.errors import ConfigError
from cryptota_core.market.frame import parse_symbols
from cryptota_core.market.intervals import SIGNIFICANCE_PERIOD_MS, parse_interval
from cryptota_core.redact import mask_url_password

SourceName = Literal["auto", "binance", "archive", "synthetic"]


class Settings(BaseSettings):
    """CryptoTA settings. Field ``x`` is read from ``CRYPTOTA_X`` unless an alias says otherwise."""

    model_config = SettingsConfigDict(env_prefix="CRYPTOTA_", extra="ignore", frozen=True)

    home: Path = Field(
        default=Path.home() / ".cryptota",
        description="Where the embedded default keeps its SQLite store, Dagster home and plots.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the candle and results store; default: SQLite under home.",
    )
    redis_url: str | None = Field(
        default=None, description="redis:// URL for the cache and shared rate limiter; unset = off."
    )
    celery_broker_url: str | None = Field(
        default=None,
        description="redis:// URL of the Celery broker and result backend that "
        "distributed_backtest_job and the Celery workers share; unset = no Celery.",
    )
    symbols: Annotated[list[str], NoDecode] = Field(
        default=["BTCUSDT", "ETHUSDT"], description="Comma-separated symbol universe."
    )
    interval: str = Field(default="1m", description="Base interval of ingested candles.")
    source: SourceName = Field(default="auto", description="auto, binance, archive or synthetic.")
    synthetic_seed: int = Field(default=42, description="Seed of the synthetic market generator.")
    archive_url: str = Field(
        default="https://data.binance.vision",
        description="data.binance.vision base URL, or a file:// directory laid out the same way.",
    )
    binance_base_url: str = Field(
        default="https://api.binance.com",
        validation_alias=AliasChoices("BINANCE_BASE_URL", "CRYPTOTA_BINANCE_BASE_URL"),
        description="Scheme and host of the Binance REST API; /api/v3/... is appended.",
    )
    binance_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("BINANCE_API_KEY", "CRYPTOTA_BINANCE_API_KEY")
    )
    binance_api_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("BINANCE_API_SECRET", "CRYPTOTA_BINANCE_API_SECRET"),
    )
    backtest_interval: str = Field(
        default="1h", description="Candle interval the pipeline's backtests run on."
    )
    backtest_days: int = Field(
        default=30, gt=0, le=3650, description="Backtest window: the last N full UTC days."
    )
    strategy_grids: dict[str, dict[str, list[Any]]] = Field(
        default_factory=lambda: {
            "rsi": {"period": [7, 14, 21], "oversold": [20, 30], "overbought": [70, 80]},
            # Oversold RSI above a rising short SMA: a pull-back inside an up-move.
            "rsi_ma": {
                "period": [7, 14],
                "oversold": [35, 40],
                "overbought": [65, 70],
                "ma_period": [10],
            },
        },
        description="Parameter grids (JSON) whose combinations become the param_sets partitions.",
    )
    leaderboard_min_trades: int = Field(
        default=5,
        ge=0,
        le=1_000_000,
        description="Backtest runs with fewer trades rank after the runs with at least this many "
        "in the leaderboard and are flagged there: a Sharpe ratio of a handful of trades is luck.",
    )
    reoptimize_after_days: int = Field(
        default=1, gt=0, description="New days of candles that trigger a symbol's re-optimisation."
    )
    optimization_grids: dict[str, dict[str, list[Any]]] = Field(
        default_factory=lambda: {
            # The 1,000-set RSI grid of the benchmark: one sweep takes well under a second.
            "rsi": {
                "period": list(range(6, 26, 2)),
                "oversold": list(range(10, 40, 3)),
                "overbought": list(range(61, 91, 3)),
            },
            "rsi_ma": {
                "period": [7, 14, 21],
                "oversold": [25, 30, 35, 40],
                "overbought": [65, 70, 75],
                "ma_period": [10, 20, 50],
            },
        },
        description="Grids (JSON) parameter_optimization and walk_forward_report search per "
        "strategy.",
    )
    optimization_objective: str = Field(
        default="sharpe", description="What optimisation ranks by: sharpe, sortino, calmar, ..."
    )
    optimization_days: int = Field(
        default=90, gt=0, le=3650, description="Optimisation window: the last N full UTC days."
    )
    optimization_top: int = Field(default=10, gt=0, description="Best sets an optimisation keeps.")
    optimization_min_trades: int = Field(
        default=5,
        ge=0,
        description="Sets with fewer closed trades are dropped before an optimisation ranks and "
        "counts its trials.",
    )
    optimization_significance_period: str = Field(
        default="1d",
        description="Period PSR, DSR and PBO aggregate returns to (1h, 1d, 1w, ...).",
    )
    optimization_recheck: int = Field(
        default=1,
        ge=0,
        description="How many of the best sets re-run set by set to check the sweep (default: "
        "the winner).",
    )
    optimization_recheck_engine: Literal["fast", "backtrader"] = Field(
        default="fast",
        description="The engine of that re-check: fast (the numba event loop, ~0.1 s per set "
        "on a year of 1m) or backtrader (the reference, ~30 s).",
    )
    walk_forward_days: int = Field(
        default=180, gt=0, le=3650, description="Walk-forward window: the last N full UTC days."
    )
    walk_forward_windows: int = Field(default=5, gt=0, description="Out-of-sample windows.")
    walk_forward_in_sample_ratio: float = Field(
        default=3.0, gt=0, description="In-sample length per out-of-sample length."
    )
    walk_forward_anchored: bool = Field(
        default=False, description="In-sample windows all start at the window's first candle."
    )
    drift_days: int = Field(
        default=7, gt=0, description="Recent days the drift sensor judges the best parameters on."
    )
    drift_sigmas: float = Field(
        default=1.0,
        gt=0,
        description="Standard deviations below the walk-forward expectation that count as drift.",
    )
    results_retention_days: int | None = Field(
        default=None, gt=0, description="Purge backtest results older than this; unset keeps all."
    )
    cache_ttl_seconds: int = Field(default=7 * 86_400, gt=0)
    csv_max_bytes: int = Field(
        default=2 * 1024**3,
        gt=0,
        description="Largest kline CSV (or zip member) `--csv` reads, in bytes; default 2 GiB. A "
        "year of 1m candles is about 60 MB, so the default is decades of them; the limit keeps a "
        "wrong path (a disk image, an endless pipe) from being read until memory runs out.",
    )
    timescale_retention_days: int | None = Field(
        default=None, gt=0, description="Drop 1m candle chunks older than this (TimescaleDB only)."
    )
    dagster_home: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("DAGSTER_HOME", "CRYPTOTA_DAGSTER_HOME"),
        description="Dagster instance directory; default: dagster/ under CRYPTOTA_HOME.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator("symbols", mode="before")
    @classmethod
    def _parse_symbols(cls, value: object) -> list[str]:
        if isinstance(value, str | list | tuple):
            return parse_symbols(value)
        raise ValueError("expected a comma-separated list such as BTCUSDT,ETHUSDT")

    @field_validator("interval", "backtest_interval")
    @classmethod
    def _parse_interval(cls, value: str) -> str:
        return parse_interval(value)

    @field_validator("optimization_significance_period")
    @classmethod
    def _significance_period(cls, value: str) -> str:
        if value not in SIGNIFICANCE_PERIOD_MS:
            raise ValueError(f"use one of {', '.join(SIGNIFICANCE_PERIOD_MS)}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError(
                "use a SQLAlchemy URL such as postgresql+psycopg://user:pass@host/db or "
                "sqlite:///path/to/cryptota.db"
            )
        return value

    @field_validator("redis_url", "celery_broker_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("use a URL such as redis://localhost:6379/0")
        return value

    @field_validator("binance_base_url", "archive_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "file://")):
            raise ValueError("use a URL such as https://api.binance.com")
        return value.rstrip("/")

    @cached_property
    def resolved_dagster_home(self) -> Path:
        """The Dagster instance the demo and ``make ui`` share (a SQLite instance by default)."""
        return (self.dagster_home or self.home / "dagster").expanduser()

    @cached_property
    def resolved_database_url(self) -> str:
        """The store URL: the configured one, or a SQLite file under ``home``."""
        return self.database_url or f"sqlite:///{self.home / 'cryptota.db'}"


_ENV_NAMES = {
    "dagster_home": "DAGSTER_HOME",
    "binance_base_url": "BINANCE_BASE_URL",
    "binance_api_key": "BINANCE_API_KEY",
    "binance_api_secret": "BINANCE_API_SECRET",
}


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (overrides win), turning a validation failure into one
    :class:`ConfigError` line that names the environment variable and what it accepts."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as e:
        match = re.search(r'field "(\w+)"', str(e))
        field = match.group(1) if match else "?"
        name = _ENV_NAMES.get(field, f"CRYPTOTA_{field.upper()}")
        raise ConfigError(f"{name} is not valid JSON: {e.__cause__ or e}") from None
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        name = _ENV_NAMES.get(field, f"CRYPTOTA_{field.upper()}")
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(
            f"{name}={_shown(field, err.get('input'))} is invalid: {message}"
        ) from None


def _shown(field: str, value: object) -> str:
    """How a rejected value appears in the error: secrets never, URL passwords masked."""
    if field in ("binance_api_key", "binance_api_secret"):
        return "'***'"
    return repr(mask_url_password(value) if isinstance(value, str) else value)
