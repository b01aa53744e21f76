"""Candles from the source into the store: the asset, its checks, schedule and sensor."""

from dagster import Definitions

from cryptota_pipelines.defs.ingestion.assets import candles_1m
from cryptota_pipelines.defs.ingestion.checks import candles_1m_checks
from cryptota_pipelines.defs.ingestion.schedules import (
    candle_ingestion_job,
    nightly_candle_ingestion_schedule,
)
from cryptota_pipelines.defs.ingestion.sensors import symbol_universe_sensor

defs = Definitions(
    assets=[candles_1m],
    asset_checks=[candles_1m_checks],
    jobs=[candle_ingestion_job],
    schedules=[nightly_candle_ingestion_schedule],
    sensors=[symbol_universe_sensor],
)
