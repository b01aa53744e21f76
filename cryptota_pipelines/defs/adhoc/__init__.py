"""Ad-hoc backtests: ``adhoc_backtest_job`` (``jobs.py``) runs one backtest described by its run
config — the old service's submit / status / results, through the Launchpad or Dagster's
GraphQL API (docs/examples/adhoc_backtest.py)."""
