"""The asset keys of DESIGN §4, for a module that refers to an asset defined in another one.

Each definition lives in exactly one module under ``defs/``, where ``load_from_defs_folder``
finds it; a module that depends on it (a check, a downstream asset, a sensor) names it by key
instead of importing the definition object into its own namespace.
"""

from dagster import AssetKey

CANDLES_1M = AssetKey("candles_1m")
CANDLE_ROLLUPS = AssetKey("candle_rollups")
BACKTEST_RUNS = AssetKey("backtest_runs")
STRATEGY_LEADERBOARD = AssetKey("strategy_leaderboard")
PARAMETER_OPTIMIZATION = AssetKey("parameter_optimization")
WALK_FORWARD_REPORT = AssetKey("walk_forward_report")
TRADING_SIGNALS = AssetKey("trading_signals")
