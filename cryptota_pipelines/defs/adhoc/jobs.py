"""``adhoc_backtest_job``: one backtest described by the run config, stored under the run's id.

The service this project replaces took ``POST /backtests`` (strategy, symbol, dates, timeframe,
capital, parameters), answered with an id, and served status and results by that id. Here the
three calls are Dagster's own: launch the job with a run config (Launchpad, or
``DagsterGraphQLClient.submit_job_execution``), poll the run's status (``get_run_status``), read
the result by run id (``cryptota results RUN_ID --json``, or the run's ``result`` metadata).

Bad input is refused with one line naming the field: the config's types and the interval (an
enum of the supported intervals) when the run is launched, before anything runs; the strategy, its
parameters (against the strategy's typed model), the symbol, the dates and the broker settings
(cash, commission, slippage, stake: by :class:`~cryptota_core.broker.BrokerSettings`,
the model the CLI and the engines validate them with, which also gives their defaults) as the
op's failure, before any candle is read.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import pandas as pd
from dagster import (
    Config,
    MetadataValue,
    OpExecutionContext,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from cryptota_core.app.backtests import run_and_store
from cryptota_core.backtest.result import iso_utc
from cryptota_core.backtest.runs import BacktestWindow, ParamSet
from cryptota_core.broker import BrokerSettingError, BrokerSettings
from cryptota_core.errors import InvalidInputError
from cryptota_core.market.frame import normalise_symbol
from cryptota_core.market.intervals import parse_interval, to_utc_timestamp
from cryptota_core.numbers import finite_or_none
from cryptota_core.strategies import get_strategy
from cryptota_pipelines.failures import (
    NOT_RETRYABLE_ON_STORED_DATA,
    fail_fast_on_bad_input,
)
from cryptota_pipelines.resources import (
    BacktestCacheResource,
    CandleStoreResource,
    ResultsStoreResource,
)

Interval = Literal["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"]
"""The supported intervals (``cryptota_core.market.intervals.INTERVAL_MS``; a test keeps them
equal), as an enum of the run config, so a bad one is refused when the run is launched."""

T = TypeVar("T")


def _broker_field(name: str) -> Any:
    """A run-config field with :class:`BrokerSettings`'s default and description of ``name``,
    so the job cannot drift from the defaults the CLI and the engines use. Its bounds are not
    copied: :meth:`AdhocBacktestConfig.request` checks them, naming the field in one line."""
    settings = BrokerSettings.model_fields[name]
    return Field(default=settings.default, description=settings.description)


class AdhocBacktestConfig(Config):
    """One backtest: which strategy with which parameters, on which candles, with which broker."""

    strategy: str = Field(
        description="Registered strategy: rsi, rsi_ma, rsi_divergence, grid or a user strategy."
    )
    symbol: str = Field(description="Binance spot symbol whose candles are in the store: BTCUSDT.")
    interval: Interval = Field(default="1h", description="Candle interval (timeframe), e.g. 15m.")
    start: str = Field(description="UTC start, inclusive: 2024-01-01 or 2024-01-01T12:00:00Z.")
    end: str = Field(description="UTC end, exclusive: 2024-03-01 ends with the last of February.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description='Strategy parameters, e.g. {"period": 14, "oversold": 30, "overbought": 70}; '
        "unset ones take the strategy's defaults.",
    )
    # Ranges are checked by cryptota_core's BrokerSettings (in request()), the model every path
    # shares; defaults and descriptions are its own, so the Launchpad shows what the CLI runs.
    cash: float = _broker_field("cash")
    commission: float = _broker_field("commission")
    slippage: float = _broker_field("slippage")
    stake: float = _broker_field("stake")
    allow_partial: bool = Field(
        default=False,
        description="Backtest on the stored part of [start, end) when the store does not cover "
        "all of it (the result's window says which part); by default such a window is refused.",
    )

    def request(self) -> "AdhocRequest":
        """The validated request; an invalid field raises one line that starts with its name."""
        spec = _field("strategy", lambda: get_strategy(self.strategy))
        params = _field("params", lambda: spec.parse_params(self.params).model_dump())
        start = _field("start", lambda: to_utc_timestamp(self.start))
        end = _field("end", lambda: to_utc_timestamp(self.end))
        if end <= start:
            raise InvalidInputError(
                f"end: {end.isoformat()} is not after start {start.isoformat()}; the window is "
                "[start, end), so end must be later"
            )
        return AdhocRequest(
            strategy=spec.name,
            params=params,
            symbol=_field("symbol", lambda: normalise_symbol(self.symbol)),
            interval=_field("interval", lambda: parse_interval(self.interval)),
            start=start,
            end=end,
            broker=self._broker(),
        )

    def _broker(self) -> BrokerSettings:
        """The broker settings, validated by the one model every path shares; the error names
        the run-config field (``stake: 2.0 is invalid: ...``)."""
        try:
            return BrokerSettings(
                cash=self.cash,
                commission=self.commission,
                slippage=self.slippage,
                stake=self.stake,
            )
        except BrokerSettingError as e:
            raise InvalidInputError(e.field_message) from None


@dataclass(frozen=True)
class AdhocRequest:
    """What :class:`AdhocBacktestConfig` asks for, validated."""

    strategy: str
    params: dict[str, Any]
    symbol: str
    interval: str
    start: pd.Timestamp
    end: pd.Timestamp
    broker: BrokerSettings

    def param_set(self) -> ParamSet:
        return ParamSet(get_strategy(self.strategy).slug(self.params), self.strategy, self.params)

    def window(self) -> BacktestWindow:
        return BacktestWindow(self.interval, self.start, self.end)


def _field(name: str, parse: Callable[[], T]) -> T:
    """``parse()``, its one-line error prefixed with the run-config field it is about."""
    try:
        return parse()
    except InvalidInputError as e:
        raise InvalidInputError(f"{name}: {e}") from None


@op(
    description="Backtest the run config's strategy on stored candles and store the result under "
    "the run's id."
)
def adhoc_backtest(
    context: OpExecutionContext,
    config: AdhocBacktestConfig,
    candle_store: CandleStoreResource,
    results_store: ResultsStoreResource,
    backtest_cache: BacktestCacheResource,
) -> None:
    """Validate, read the candles, run (the fast engine wherever it implements the strategy, as
    the pipeline does), store with the run id, and show the result (the ``cryptota backtest
    --json`` object) as the output's metadata."""
    # Nothing here gets better on a retry: bad input and missing candles are the user's to fix.
    with fail_fast_on_bad_input(NOT_RETRYABLE_ON_STORED_DATA):
        request = config.request()
        run = run_and_store(
            candle_store.store(),
            results_store.store(),
            symbol=request.symbol,
            param_set=request.param_set(),
            window=request.window(),
            cache=backtest_cache.cache(),
            run_id=context.run.run_id,
            cash=request.broker.cash,
            commission=request.broker.commission,
            slippage=request.broker.slippage,
            stake=request.broker.stake,
            allow_partial=config.allow_partial,
        )
    result, candles = run.result, run.candles
    assert candles.key is not None  # read from the store
    metadata: dict[str, Any] = {
        "result": MetadataValue.json(result.to_dict()),
        "run_key": run.run_key,
        "symbol": request.symbol,
        "exchange": candles.key.exchange,
        "slug": result.slug,
        "engine": result.engine,
        "bars": result.bars,
        "window": f"[{iso_utc(result.start)}, {iso_utc(result.end)})",
        "cached": run.cached,
        "candle_fingerprint": candles.fingerprint,
        **result.headline(),
        "equity_final": finite_or_none(result.equity_final),
        "read_with": f"cryptota results {context.run.run_id} --json",
    }
    if candles.key.exchange == "synthetic":
        metadata["data_warning"] = "SYNTHETIC: backtested on simulated candles, not Binance data"
    context.add_output_metadata(metadata)


@job(
    executor_def=in_process_executor,
    tags={"cryptota/trigger": "adhoc"},
    description="One backtest from its run config (strategy, symbol, interval, start/end, cash, "
    "commission, params), stored under the run's id: read it with `cryptota results RUN_ID "
    "--json`.",
)
def adhoc_backtest_job() -> None:
    adhoc_backtest()
