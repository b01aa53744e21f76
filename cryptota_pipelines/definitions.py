"""The code location: every domain's definitions plus resources configured from the settings."""

from dagster import Definitions

from cryptota_core.settings import Settings, load_settings
from cryptota_pipelines.defs import automation, backtests, ingestion, rollups
from cryptota_pipelines.resources import resources_from_settings


def build_defs(settings: Settings) -> Definitions:
    """The Definitions for ``settings`` (tests build their own; the code location uses the env)."""
    resources = Definitions(resources=resources_from_settings(settings))
    return Definitions.merge(
        ingestion.defs, rollups.defs, backtests.defs, automation.defs, resources
    )


defs = build_defs(load_settings())
