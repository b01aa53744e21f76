"""Dagster definitions by domain (ingestion, rollups, backtests, automation), each a package of
``assets.py``, ``checks.py``, ``schedules.py`` and ``sensors.py``. ``load_from_defs_folder``
(``cryptota_pipelines.definitions``) collects every definition in these modules: nothing here
lists them again."""
