"""Backtests of every parameter set on every symbol, their checks, the leaderboard, and what
keeps them fresh: the backtest job, its schedules and sensors."""

from dagster import Definitions

from cryptota_pipelines.defs.backtests.assets import backtest_runs, strategy_leaderboard
from cryptota_pipelines.defs.backtests.checks import backtest_runs_checks
from cryptota_pipelines.defs.backtests.schedules import (
    backtest_job,
    nightly_backtest_schedule,
    weekly_walk_forward_schedule,
)
from cryptota_pipelines.defs.backtests.sensors import param_set_sensor, reoptimization_sensor

defs = Definitions(
    assets=[backtest_runs, strategy_leaderboard],
    asset_checks=[backtest_runs_checks],
    jobs=[backtest_job],
    schedules=[nightly_backtest_schedule, weekly_walk_forward_schedule],
    sensors=[param_set_sensor, reoptimization_sensor],
)
