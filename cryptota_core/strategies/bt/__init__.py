"""The backtrader implementations of the built-in strategies and the bases every implementation
(a user's too) derives from. Only a backtrader run imports this package: each spec names its
class as ``"module:Class"`` (:attr:`~cryptota_core.strategies.base.Strategy.bt_class`)."""
