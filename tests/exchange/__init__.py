"""A local Binance-compatible exchange: the one stand-in DESIGN §9 allows (for the external
exchange only). See :mod:`tests.exchange.server`; run by hand with
``python -m tests.exchange --port 8765 --symbols BTCUSDT,ETHUSDT``."""

from tests.exchange.server import (
    TEST_API_KEY,
    TEST_API_SECRET,
    Fault,
    FaultPlan,
    LocalExchange,
    RequestRecord,
)

__all__ = [
    "TEST_API_KEY",
    "TEST_API_SECRET",
    "Fault",
    "FaultPlan",
    "LocalExchange",
    "RequestRecord",
]
