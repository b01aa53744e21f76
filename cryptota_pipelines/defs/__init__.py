"""Dagster definitions by domain: ingestion, rollups, automation. Each package exports ``defs``."""
