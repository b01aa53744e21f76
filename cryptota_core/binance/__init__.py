"""Binance's spot REST API: the transport (:mod:`~cryptota_core.binance.rest`) and the request
weight budget it draws on (:mod:`~cryptota_core.binance.ratelimit`), shared by the candle source
(:mod:`cryptota_core.market.sources.binance`) and the snapshots
(:mod:`cryptota_core.market.snapshot`)."""
