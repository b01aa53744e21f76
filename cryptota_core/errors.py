"""The exception hierarchy of CryptoTA.

Every error a user can cause or an operator must act on is one of these classes. Each class says
who handles it. Adapters translate third-party exceptions into these with ``raise ... from e`` so
callers never have to know which library sits behind a boundary. Messages are one line: the bad
value, the accepted form, and what to do next.
"""

from __future__ import annotations


class CryptotaError(Exception):
    """Base class. The CLI prints ``str(error)`` on one line and exits non-zero."""


class ConfigError(CryptotaError):
    """A setting from the environment is invalid. Handled by the operator: fix the variable."""


class InvalidInputError(CryptotaError, ValueError):
    """The user passed a bad value (symbol, interval, dates, parameters, file). The user's fault:
    never retried."""


class DataError(CryptotaError):
    """Data read from a file, archive or server is malformed or fails verification (bad CSV,
    checksum mismatch, garbage response). Stops the current load; nothing of it is stored."""


class NoDataError(CryptotaError):
    """The store has no candles for the requested series and window. The user's next step is
    usually to ingest them first."""


class StorageError(CryptotaError):
    """The database is unreachable or refused an operation. Stops the run; the transaction of the
    failed call is rolled back, so nothing partial is left behind."""


class SourceUnavailableError(CryptotaError):
    """An external source (exchange, archive server) could not be reached after retries. Retried
    by the orchestrator's retry policy; the run fails if it persists."""
