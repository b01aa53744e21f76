"""adhoc_backtest_job's broker settings go through the same model as the CLI's
(:class:`cryptota_core.broker.BrokerSettings`): an out-of-range one fails the run with one
line naming the field, before any candle is read, and nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cryptota_core.errors import InvalidInputError
from cryptota_pipelines.defs.adhoc.jobs import AdhocBacktestConfig, adhoc_backtest_job
from cryptota_pipelines.resources import (
    BacktestCacheResource,
    CandleStoreResource,
    ResultsStoreResource,
)

REQUEST: dict[str, Any] = {
    "strategy": "rsi",
    "symbol": "BTCUSDT",
    "interval": "1h",
    "start": "2024-01-01",
    "end": "2024-02-01",
}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("stake", 2.0, "stake: 2.0 is invalid: use a fraction of equity in (0, 1], such as 0.95"),
        ("cash", 1e308, "cash: 1e+308 is invalid: use a positive amount up to 1e15"),
        ("commission", -0.001, "commission: -0.001 is invalid: use a fraction of the notional"),
        ("slippage", 1.0, "slippage: 1.0 is invalid: use a fraction of the price in [0, 1)"),
    ],
)
def test_the_request_refuses_bad_broker_settings_naming_the_field(
    field: str, value: float, message: str
) -> None:
    with pytest.raises(InvalidInputError) as error:
        AdhocBacktestConfig(**REQUEST, **{field: value}).request()
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_valid_broker_settings_reach_the_request() -> None:
    request = AdhocBacktestConfig(**REQUEST, cash=5000.0, stake=1.0).request()
    assert request.broker.kwargs() == {
        "cash": 5000.0,
        "commission": 0.001,
        "slippage": 0.0,
        "stake": 1.0,
    }


def test_the_run_fails_before_reading_any_candle(sqlite_url: str) -> None:
    """The store is empty: a run that read it would fail with "no candles" instead."""
    result = adhoc_backtest_job.execute_in_process(
        run_config={"ops": {"adhoc_backtest": {"config": {**REQUEST, "stake": 2.0}}}},
        resources={
            "candle_store": CandleStoreResource(database_url=sqlite_url),
            "results_store": ResultsStoreResource(database_url=sqlite_url),
            "backtest_cache": BacktestCacheResource(),
        },
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_failure_data.error is not None
    error = str(failure.step_failure_data.error.message)
    assert "stake: 2.0 is invalid: use a fraction of equity in (0, 1]" in error
    assert "no candles" not in error
    # Not even opened: the SQLite file of the store was never created, so nothing was stored.
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()
