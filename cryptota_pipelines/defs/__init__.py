"""Dagster definitions by domain, one package each:

- ``ingestion``: candles from the source into the store (assets, checks, sensors);
- ``rollups``: higher intervals of the ingested candles (assets);
- ``backtests``: every parameter set on every symbol, checks, leaderboard, schedules, sensors;
- ``research``: optimisation, walk-forward and signals (assets) and their automation;
- ``automation``: maintenance jobs and their schedules;
- ``adhoc``: ``adhoc_backtest_job``, one backtest described by its run config (jobs);
- ``distributed``: ``distributed_backtest_job``, backtests spread over Celery workers (jobs).

Every domain follows one file layout, by kind of definition: ``assets.py``, ``checks.py`` (their
asset checks), ``schedules.py`` (schedules and the jobs they launch), ``sensors.py`` (sensors and
the jobs they launch), ``jobs.py`` (jobs no schedule or sensor launches, with their ops); a domain
has only the files it needs.

``load_from_defs_folder`` (``cryptota_pipelines.definitions``) collects every definition in these
modules: nothing here lists them again."""
