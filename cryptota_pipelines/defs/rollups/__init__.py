"""Higher intervals of the ingested candles."""

from dagster import Definitions

from cryptota_pipelines.defs.rollups.assets import candle_rollups

defs = Definitions(assets=[candle_rollups])
