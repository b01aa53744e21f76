"""CryptoTA core: market data, storage, strategies, backtests and metrics.

This package is the domain library. It never imports Dagster, so it works the same from a
notebook, the `cryptota` CLI and the Dagster assets in `cryptota_pipelines`.
"""

__version__ = "0.1.0"

CODE_VERSION = __version__
"""Recorded with every stored result and part of every cache key: a new release never serves a
result computed by an older engine. Here, at the root, so that recording it (a research
result's lineage) imports nothing else."""
