"""Dagster definitions by domain: ingestion, rollups, backtests, automation. Each package exports
``defs``."""
