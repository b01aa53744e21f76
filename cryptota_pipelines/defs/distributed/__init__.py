"""Work spread over Celery workers: ``distributed_backtest_job`` (``jobs.py``) cuts the
``backtest_runs`` partitions of one run into many steps, which the Celery executor
(``cryptota_pipelines.executors``) hands to whichever worker is free."""
