"""Research engine: tools to judge the results of a strategy optimisation.

:mod:`cryptota_core.research.statistics` holds the overfitting statistics (probabilistic and
deflated Sharpe ratio, minimum track record length, probability of backtest overfitting). Pure
NumPy, no Dagster, no I/O.
"""
