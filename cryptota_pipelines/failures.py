"""How our steps fail: which errors a retry cannot fix, and the retry policy of the steps that
compute on stored data (backtests, research). The ingestion assets, which call the exchange, keep
a retry policy of their own.

Shared by every domain under ``defs/``, so it lives beside them rather than inside one of them.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Backoff, Failure, Jitter, RetryPolicy

from cryptota_core.errors import ConfigError, DataError, InvalidInputError, NoDataError

NOT_RETRYABLE: tuple[type[Exception], ...] = (ConfigError, InvalidInputError, DataError)
"""Errors a retry cannot fix (bad settings, bad symbol, data failing validation)."""

NOT_RETRYABLE_ON_STORED_DATA: tuple[type[Exception], ...] = (*NOT_RETRYABLE, NoDataError)
"""For steps reading stored candles: missing candles are the operator's to ingest, and retrying
in a minute would not find them."""

STORED_DATA_RETRY = RetryPolicy(
    max_retries=2, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)
"""A database hiccup under a backtest or research step is retried; bad input fails at once."""


@contextmanager
def fail_fast_on_bad_input(
    not_retryable: tuple[type[Exception], ...] = NOT_RETRYABLE,
) -> Iterator[None]:
    """Turn errors a retry cannot fix into a Dagster failure that skips the retry policy, keeping
    the core's one-line message; transient ones (source unavailable, database down) propagate
    and are retried."""
    try:
        yield
    except not_retryable as e:
        raise Failure(description=str(e), allow_retries=False) from e
