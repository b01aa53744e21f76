"""``candle_rollups``: the 15m/1h/4h/1d candles of each ingested day, as backtests will read them.

On TimescaleDB the store serves these intervals from continuous aggregates, which this asset
refreshes over the covered days so a backfill does not wait for the refresh policy; elsewhere the
store resamples the 1m candles on read. Either way the asset reads each interval back through the
store and records how many candles it found, so a hole shows up here, next to the day it is in.
"""

from dagster import AssetExecutionContext, AutomationCondition, MaterializeResult, asset

from cryptota_core.market.intervals import ROLLUP_INTERVALS
from cryptota_pipelines.keys import CANDLES_1M
from cryptota_pipelines.partitions import (
    CANDLE_BACKFILL_POLICY,
    CANDLE_PARTITIONS,
    series_windows,
)
from cryptota_pipelines.resources import (
    CandleStoreResource,
    MarketSourceResource,
)

AFTER_CANDLES = (
    AutomationCondition.eager().without(AutomationCondition.in_latest_time_window())
    & AutomationCondition.all_deps_blocking_checks_passed()
).with_label("after each day of candles_1m that passed its blocking checks")
"""Any day of ``candles_1m`` that was (re)materialised gets its rollups refreshed: not only the
latest day (eager's default), since the nightly repair and backfills write older days too. Days
whose candles fail a blocking check wait, as they do inside one run; a run that already built
the rollups with the candles (``candle_ingestion_job``, a backfill of both) leaves nothing to
do."""


@asset(
    deps=[CANDLES_1M],
    partitions_def=CANDLE_PARTITIONS,
    backfill_policy=CANDLE_BACKFILL_POLICY,
    group_name="rollups",
    automation_condition=AFTER_CANDLES,
    kinds={"python"},  # + where it writes, from the settings (definitions.py)
    code_version="1",
    description="15m, 1h, 4h and 1d candles of the day, built from candles_1m by the store.",
)
def candle_rollups(
    context: AssetExecutionContext,
    candle_store: CandleStoreResource,
    market: MarketSourceResource,
) -> MaterializeResult:
    """Refresh the aggregates where they exist, then count each interval's candles per window."""
    store, exchange = candle_store.store(), market.source().exchange
    windows = series_windows(context.partition_keys)
    store.refresh_rollups(min(w.start for w in windows), max(w.end for w in windows))
    per_window = [store.rollup_counts(exchange, w.symbol, w.start, w.end) for w in windows]
    counts = {interval: sum(c[interval] for c in per_window) for interval in ROLLUP_INTERVALS}
    return MaterializeResult(
        metadata={
            **{f"candles_{interval}": n for interval, n in counts.items()},
            "window": "; ".join(map(str, windows)),
            "exchange": exchange,
            "aggregates": "timescaledb continuous aggregates"
            if store.has_timescale
            else "resampled on read",
        }
    )
