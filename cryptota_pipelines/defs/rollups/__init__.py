"""Higher intervals of the ingested candles."""
