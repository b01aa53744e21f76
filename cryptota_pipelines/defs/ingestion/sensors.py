"""``symbol_universe_sensor``: the ``symbols`` partitions follow ``CRYPTOTA_SYMBOLS``; and
``candle_ingestion_job``, what it launches.

The cursor holds the universe last acted on, so the sensor does work only when the configured
universe changes: it then adds and removes ``symbols`` partitions to match, and asks for the
recent days of each new symbol at once, one run per symbol covering the whole stretch (older
history is a backfill away in the UI). Removing a symbol keeps its stored candles.

The nightly ingestion and its repair of missing days are not a schedule: they are the
``automation_condition`` of ``candles_1m`` (see ``NIGHTLY_INGESTION``), evaluated by
``default_automation_condition_sensor``.
"""

from datetime import timedelta

import pandas as pd
from dagster import (
    AddDynamicPartitionsRequest,
    AssetSelection,
    DeleteDynamicPartitionsRequest,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from cryptota_pipelines.defs.ingestion.assets import REPAIR_WINDOW_DAYS
from cryptota_pipelines.partitions import (
    SYMBOLS_PARTITIONS,
    range_tags,
    symbol_partitions,
    utc_day,
)
from cryptota_pipelines.resources import MarketSourceResource

NEW_SYMBOL_DAYS = REPAIR_WINDOW_DAYS + 1
"""Days a new symbol gets straight away: yesterday and the nightly repair window before it."""

candle_ingestion_job = define_asset_job(
    "candle_ingestion_job",
    selection=AssetSelection.assets("candles_1m", "candle_rollups"),
    description="candles_1m, its checks and candle_rollups for the partitions of the run.",
)


@sensor(
    name="symbol_universe_sensor",
    job=candle_ingestion_job,
    minimum_interval_seconds=60,
    description="Keeps the symbols partitions equal to CRYPTOTA_SYMBOLS and ingests the last "
    f"{NEW_SYMBOL_DAYS} days of each new symbol.",
)
def symbol_universe_sensor(
    context: SensorEvaluationContext, market: MarketSourceResource
) -> SensorResult | SkipReason:
    """Act once per change of the configured universe: partition requests plus a range run for
    every symbol that joined."""
    universe = ",".join(market.symbols)
    if context.cursor == universe:
        return SkipReason(f"symbol universe unchanged: {universe}")
    current = context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS)
    added = [s for s in market.symbols if s not in current]
    removed = [s for s in current if s not in market.symbols]
    requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
    if added:
        requests.append(symbol_partitions.build_add_request(added))
    if removed:
        requests.append(symbol_partitions.build_delete_request(removed))
    last = utc_day(pd.Timestamp.now(tz="UTC")) - timedelta(days=1)
    first = last - timedelta(days=NEW_SYMBOL_DAYS - 1)
    runs = [
        RunRequest(
            run_key=f"{symbol}:{first}:{last}",
            tags={**range_tags(first, last, [symbol]), "cryptota/trigger": "new_symbol"},
        )
        for symbol in added
    ]
    context.log.info(f"universe {universe}: added {added or 'none'}, removed {removed or 'none'}")
    return SensorResult(run_requests=runs, dynamic_partitions_requests=requests, cursor=universe)
