"""The code location (``-m cryptota_pipelines.definitions``): every definition under ``defs/``,
found by Dagster's ``load_from_defs_folder``, plus the resources configured from the settings.

``cryptota_pipelines`` is a dg project (``[tool.dg]`` in pyproject.toml), so adding a module
under ``defs/<domain>/`` is all it takes to add its assets, checks, jobs, schedules and sensors;
``dg check defs`` (``make defs``) loads and validates the result.
"""

import warnings
from pathlib import Path

import dagster as dg
from sqlalchemy.engine import make_url

from cryptota_core.settings import Settings, load_settings
from cryptota_pipelines.resources import resources_from_settings


def build_defs(settings: Settings) -> dg.Definitions:
    """The code location for ``settings``: tests, the demo and the benchmarks build their own."""
    store = storage_kind(settings)
    location = dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(resources=resources_from_settings(settings)),
    )
    # Definitions.map_asset_specs is "preview" in Dagster 1.13 and says so on every load of the
    # code location (CLI, code server, run workers). What it sets here is a label in the UI, so
    # the warning is Dagster's note to us, not something a user of `cryptota` could act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return location.map_asset_specs(func=lambda spec: spec.merge_attributes(kinds={store}))


def storage_kind(settings: Settings) -> str:
    """The kind every asset gets for where it writes: ``sqlite`` for the embedded default,
    ``postgres`` for PostgreSQL and TimescaleDB (an extension of it; whether it is installed is
    only known once connected, and the code location never connects while it loads)."""
    backend = make_url(settings.resolved_database_url).get_backend_name()
    return "sqlite" if backend == "sqlite" else "postgres"


@dg.definitions
def defs() -> dg.Definitions:
    """What Dagster loads: the settings are read from the environment when the code location
    loads, not when this module is imported."""
    return build_defs(load_settings())
