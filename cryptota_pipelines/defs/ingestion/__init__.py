"""Candles from the source into the store: the asset, its checks, its job and the sensor that
follows the symbol universe."""
