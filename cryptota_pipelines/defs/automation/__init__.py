"""Maintenance jobs and their schedules."""

from dagster import Definitions

from cryptota_pipelines.defs.automation.schedules import (
    candle_retention_job,
    candle_retention_schedule,
    results_retention_job,
    results_retention_schedule,
)

defs = Definitions(
    jobs=[candle_retention_job, results_retention_job],
    schedules=[candle_retention_schedule, results_retention_schedule],
)
