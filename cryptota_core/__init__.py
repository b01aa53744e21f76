"""CryptoTA core: market data, storage, strategies, backtests and metrics.

This package is the domain library. It never imports Dagster, so it works the same from a
notebook, the `cryptota` CLI and the Dagster assets in `cryptota_pipelines`.
"""

__version__ = "0.1.0"
