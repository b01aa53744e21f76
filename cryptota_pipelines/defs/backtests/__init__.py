"""Backtests of every parameter set on every symbol, their checks, the leaderboard, and what
keeps them fresh: the backtest job, its schedules and sensors."""
