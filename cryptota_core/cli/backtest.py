"""``cryptota backtest``: one strategy configuration on stored candles or a kline CSV."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.table import Table

from cryptota_core.backtest.cache import open_cache
from cryptota_core.broker import BrokerSettings
from cryptota_core.cli.common import candle_input, candle_options, cli, console, out
from cryptota_core.display import format_metric
from cryptota_core.settings import load_settings

if TYPE_CHECKING:
    pass


@cli.command("backtest")
@click.option("--strategy", required=True, help="Registered strategy name, e.g. rsi.")
@click.option("--params", default=None, help="JSON object, e.g. '{\"period\":14}'.")
@candle_options
@click.option(
    "--engine", type=click.Choice(["backtrader", "fast"]), default="backtrader", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (DESIGN §2).")
@click.option(
    "--plot",
    "plot_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write an equity/drawdown PNG with the trades marked.",
)
def backtest_command(
    strategy: str,
    params: str | None,
    symbol: str | None,
    interval: str | None,
    start: str | None,
    end: str | None,
    allow_partial: bool,
    csv_path: str | None,
    engine: str,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
    as_json: bool,
    plot_path: str | None,
) -> None:
    """Run one strategy configuration on stored candles or a Binance kline CSV."""
    from cryptota_core.app.backtests import backtest_or_cache
    from cryptota_core.strategies import get_strategy

    spec = get_strategy(strategy)
    spec.parse_params(params)  # fail on bad parameters before reading any data
    broker = BrokerSettings(cash=cash, commission=commission, slippage=slippage, stake=stake)
    candles = candle_input(symbol, interval, start, end, csv_path, allow_partial)
    done = backtest_or_cache(
        candles,
        strategy,
        params,
        cash=broker.cash,
        commission=broker.commission,
        slippage=broker.slippage,
        stake=broker.stake,
        cache=open_cache(load_settings()),
        engine=engine,
    )
    result = done.result
    if done.cached:
        console.print("served from the cache (identical run on identical candles)")
    if plot_path:
        from cryptota_core.backtest.plot import plot_backtest
        from cryptota_core.charts import ChartSubject

        plot_backtest(result, plot_path, subject=ChartSubject.of(candles))
        console.print(f"plot written to {plot_path}")
    if as_json:
        print(json.dumps(result.to_dict(), allow_nan=False))
        return
    table = Table(
        title=f"{result.slug} on {candles.origin} ({result.bars:,} {result.interval} candles)"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    # Every metric, as backtesting.py prints its stats: the headline first, in bold.
    headline = result.headline()
    for name, value in {**headline, **result.metrics}.items():
        table.add_row(name, format_metric(name, value), style="bold" if name in headline else None)
    out.print(table)
