"""The backtest cache: Redis when ``CRYPTOTA_REDIS_URL`` is set, a no-op otherwise.

A backtest is a pure function of its inputs (strategy, params, candles, engine, code version and
broker settings), so its result can be reused by anyone who asks the same question — a sweep
re-checking the same configuration, the CLI after a Dagster run. The key is a SHA-256 of those
inputs, behind a readable ``cryptota:bt:{exchange}:{symbol}:`` prefix so that new candles for one
symbol can invalidate that symbol's entries with ``SCAN`` (never ``KEYS``, which blocks Redis).

The cache is an optimisation, never a dependency: if Redis goes away mid-run, the first failing
call logs one warning and the cache turns itself off for the rest of the process; a backtest never
fails because of it.

Values are one bytes blob (DESIGN §8: pickle is never used for anything read back)::

    b"CTBT"  uint16 format version  uint32 header length      (big-endian, 10 bytes)
    header   UTF-8 JSON: the result's own dict form (``BacktestResult.to_dict`` without the
             trades) and, per frame, its byte offset and length in the body, its columns,
             dtypes and index
    body     one Arrow IPC stream per frame: equity, benchmark, trades, orders

Decoding reads JSON and Arrow only; a blob without the magic and version (a pickle, garbage, an
older format) is a miss, logged, never executed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cryptota_core.backtest.result import BacktestResult
from cryptota_core.errors import InvalidInputError
from cryptota_core.redact import mask_url_password
from cryptota_core.settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "cryptota:bt:"
STATS_HITS = "cryptota:bt:stats:hits"
STATS_MISSES = "cryptota:bt:stats:misses"
DEFAULT_TTL_SECONDS = 7 * 86_400

MAGIC = b"CTBT"
FORMAT_VERSION = 2
"""2: the header holds :meth:`BacktestResult.to_dict` (strict JSON, undefined metrics null)."""
_HEADER = struct.Struct(">4sHI")
_FRAMES = ("equity", "benchmark", "trades", "orders")
_INDEX_COLUMN = "__index__"
_KEY_TEXT = re.compile(r"[A-Za-z0-9._-]+")
_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
"""Errors that mean Redis is gone (refused, reset, timed out): they switch the cache off."""
_UNLINK_BATCH = 500


class CorruptEntryError(ValueError):
    """A cached blob is not in this module's format. Handled inside the cache: logged, a miss."""


# -- keys ----------------------------------------------------------------------------------------


def _key_part(value: str, what: str) -> str:
    if not isinstance(value, str) or not _KEY_TEXT.fullmatch(value):
        raise InvalidInputError(
            f"invalid {what} {value!r} for a cache key: use letters, digits, . _ - "
            "(e.g. binance, BTCUSDT)"
        )
    return value


def symbol_prefix(exchange: str, symbol: str) -> str:
    """The key prefix shared by every cached backtest of one symbol."""
    return f"{KEY_PREFIX}{_key_part(exchange, 'exchange')}:{_key_part(symbol, 'symbol')}:"


def cache_key(
    *,
    strategy: str,
    params: Mapping[str, Any],
    candle_fingerprint: str,
    engine: str,
    code_version: str,
    cash: float,
    commission: float,
    slippage: float,
    stake: float,
    interval: str,
    symbol: str,
    exchange: str,
) -> str:
    """``cryptota:bt:{exchange}:{symbol}:{sha256}`` over every input that can change a result.

    The hash is of canonical JSON (sorted keys, no spaces, floats for the broker settings), so
    the same question always gets the same key; the candle fingerprint stands for the candles,
    so new or corrected candles change the key by themselves."""
    identity = {
        "strategy": strategy,
        "params": dict(params),
        "candle_fingerprint": candle_fingerprint,
        "engine": engine,
        "code_version": code_version,
        "cash": float(cash),
        "commission": float(commission),
        "slippage": float(slippage),
        "stake": float(stake),
        "interval": interval,
        "symbol": symbol,
        "exchange": exchange,
    }
    try:
        canonical = json.dumps(
            identity, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError) as e:
        raise InvalidInputError(
            f"cannot build a cache key: params must be JSON with finite numbers ({e})"
        ) from e
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return symbol_prefix(exchange, symbol) + digest


# -- serialisation -------------------------------------------------------------------------------


def _frame_to_ipc(frame: pd.DataFrame) -> tuple[bytes, dict[str, Any]]:
    """One Arrow IPC stream plus what Arrow does not keep: pandas dtypes (``object`` vs ``str``,
    datetime units), the index and its frequency."""
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns) or _INDEX_COLUMN in columns:
        raise ValueError(f"cannot cache a frame with columns {columns}")
    index = frame.index
    data = frame.copy(deep=False)
    data.columns = columns
    spec: dict[str, Any] = {
        "columns": columns,
        "dtypes": [str(t) for t in frame.dtypes],
        "name": None,
    }
    if isinstance(index, pd.RangeIndex):
        spec["index"] = {
            "kind": "range",
            "start": index.start,
            "stop": index.stop,
            "step": index.step,
            "name": index.name,
        }
    elif isinstance(index, pd.MultiIndex):
        raise ValueError("cannot cache a frame with a MultiIndex")
    else:
        spec["index"] = {
            "kind": "column",
            "dtype": str(index.dtype),
            "name": index.name,
            "freq": index.freqstr if isinstance(index, pd.DatetimeIndex) else None,
        }
        data = data.reset_index(drop=True)
        data.insert(0, _INDEX_COLUMN, index.array)
    table = pa.Table.from_pandas(data, preserve_index=False).replace_schema_metadata(None)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue(), spec


def _frame_from_ipc(payload: bytes, spec: Mapping[str, Any]) -> pd.DataFrame:
    with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
        table = reader.read_all()
    data = table.to_pandas()
    index_spec = spec["index"]
    if index_spec["kind"] == "range":
        index: pd.Index = pd.RangeIndex(
            index_spec["start"], index_spec["stop"], index_spec["step"], name=index_spec["name"]
        )
    else:
        values = data.pop(_INDEX_COLUMN).astype(pd.api.types.pandas_dtype(index_spec["dtype"]))
        index = pd.Index(values, name=index_spec["name"])
        if index_spec.get("freq"):
            index = pd.DatetimeIndex(index, freq=index_spec["freq"])
    columns = list(spec["columns"])
    frame = pd.DataFrame(
        {
            c: data[c].astype(pd.api.types.pandas_dtype(t))
            for c, t in zip(columns, spec["dtypes"], strict=True)
        },
        columns=columns,
    )
    frame.index = index
    return frame


def encode_result(result: BacktestResult) -> bytes:
    """Serialise ``result`` into the versioned JSON + Arrow IPC blob described above."""
    body = io.BytesIO()
    frames: dict[str, Any] = {}
    parts: dict[str, pd.DataFrame] = {
        "equity": result.equity.to_frame(name="values"),
        "benchmark": result.benchmark.to_frame(name="values"),
        "trades": result.trades,
        "orders": result.orders,
    }
    for name, frame in parts.items():
        payload, spec = _frame_to_ipc(frame)
        if name in ("equity", "benchmark"):
            series = getattr(result, name)
            spec["name"] = series.name
        spec["offset"], spec["length"] = body.tell(), len(payload)
        body.write(payload)
        frames[name] = spec
    header = {"result": result.to_dict(trades=False), "frames": frames}
    head = json.dumps(header, allow_nan=False).encode()
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(head)) + head + body.getvalue()


def decode_result(blob: bytes) -> BacktestResult:
    """Rebuild a :class:`BacktestResult` from :func:`encode_result`'s blob. Only JSON and Arrow
    are parsed; anything else raises :class:`CorruptEntryError`."""
    if len(blob) < _HEADER.size:
        raise CorruptEntryError("entry is shorter than the header")
    magic, version, head_len = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise CorruptEntryError(f"entry does not start with {MAGIC!r} (got {blob[:4]!r})")
    if version != FORMAT_VERSION:
        raise CorruptEntryError(f"entry format version {version}, expected {FORMAT_VERSION}")
    body_start = _HEADER.size + head_len
    try:
        header = json.loads(blob[_HEADER.size : body_start].decode())
        frames: dict[str, pd.DataFrame] = {}
        for name in _FRAMES:
            spec = header["frames"][name]
            lo = body_start + int(spec["offset"])
            frames[name] = _frame_from_ipc(blob[lo : lo + int(spec["length"])], spec)
        names = {n: header["frames"][n]["name"] for n in ("equity", "benchmark")}
        return BacktestResult.from_dict(
            header["result"],
            equity=frames["equity"]["values"].rename(names["equity"]),
            benchmark=frames["benchmark"]["values"].rename(names["benchmark"]),
            trades=frames["trades"],
            orders=frames["orders"],
        )
    except CorruptEntryError:
        raise
    except Exception as e:  # any parse failure of untrusted bytes is a corrupt entry
        raise CorruptEntryError(f"unreadable entry ({type(e).__name__}: {e})") from e


# -- caches --------------------------------------------------------------------------------------


class ResultCache(Protocol):
    """What the engines, the CLI and the Dagster resources use; both caches implement it."""

    hits: int
    misses: int

    @property
    def enabled(self) -> bool: ...

    def get(self, key: str) -> BacktestResult | None: ...

    def set(self, key: str, result: BacktestResult, ttl: int | None = None) -> None: ...

    def invalidate_symbol(self, exchange: str, symbol: str) -> int: ...


class NullCache:
    """The cache when no Redis is configured: every ``get`` is a miss, ``set`` does nothing.
    Same interface as :class:`BacktestCache`, so callers never test for ``None``."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return False

    def get(self, key: str) -> BacktestResult | None:
        self.misses += 1
        return None

    def set(self, key: str, result: BacktestResult, ttl: int | None = None) -> None:
        return None

    def invalidate_symbol(self, exchange: str, symbol: str) -> int:
        symbol_prefix(exchange, symbol)  # same validation as the real cache
        return 0

    def close(self) -> None:
        return None


class BacktestCache:
    """Backtest results in Redis, one blob per key with a TTL, plus hit/miss counters.

    ``hits``/``misses`` count this process's lookups; Redis keeps fleet-wide totals under
    :data:`STATS_HITS` and :data:`STATS_MISSES`. The first connection error or timeout turns the
    cache off for good (one warning); later calls return at once as a :class:`NullCache` would."""

    def __init__(
        self, client: redis.Redis, *, ttl_seconds: int = DEFAULT_TTL_SECONDS, label: str = "redis"
    ) -> None:
        if ttl_seconds <= 0:
            raise InvalidInputError(f"cache TTL must be positive seconds, got {ttl_seconds!r}")
        self.client = client
        self.ttl_seconds = int(ttl_seconds)
        self.label = label
        self.hits = 0
        self.misses = 0
        self._disabled = False
        self._lock = threading.Lock()

    @classmethod
    def from_url(
        cls, url: str, *, ttl_seconds: int = DEFAULT_TTL_SECONDS, timeout: float = 2.0
    ) -> BacktestCache:
        """Connect lazily to ``url``. Short timeouts and a single retry without back-off: a
        cache that answers slowly is worse than none, and redis-py's default (ten retries with
        exponential back-off) would stall a backtest for seconds when Redis is down."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(client, ttl_seconds=ttl_seconds, label=mask_url_password(url))

    @property
    def enabled(self) -> bool:
        """False once Redis has failed and the cache switched itself off."""
        return not self._disabled

    def _unavailable(self, error: BaseException) -> None:
        with self._lock:
            if self._disabled:
                return
            self._disabled = True
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log.warning(
            "Redis cache at %s is unavailable (%s); continuing without a cache for the rest of "
            "this process",
            self.label,
            reason,
        )

    def get(self, key: str) -> BacktestResult | None:
        """The cached result for ``key``, or None on a miss, a corrupt entry or Redis down."""
        blob: Any = None
        if not self._disabled:
            try:
                blob = self.client.get(key)
            except _UNAVAILABLE as e:
                self._unavailable(e)
            except redis.exceptions.RedisError as e:  # e.g. WRONGTYPE: a stranger's key
                log.warning("cache lookup of %s failed (%s); treating it as a miss", key, e)
        result: BacktestResult | None = None
        if isinstance(blob, bytes):
            try:
                result = decode_result(blob)
            except CorruptEntryError as e:
                log.warning("ignoring unreadable cache entry %s: %s", key, e)
        if result is None:
            self.misses += 1
            self._count(STATS_MISSES)
        else:
            self.hits += 1
            self._count(STATS_HITS)
        return result

    def _count(self, stat: str) -> None:
        if self._disabled:
            return
        try:
            self.client.incr(stat)
        except _UNAVAILABLE as e:
            self._unavailable(e)
        except redis.exceptions.RedisError as e:
            log.debug("cache statistic %s not updated: %s", stat, e)

    def set(self, key: str, result: BacktestResult, ttl: int | None = None) -> None:
        """Store ``result`` under ``key`` for ``ttl`` seconds (default: the cache's TTL). A
        result that cannot be serialised is logged and skipped, never raised."""
        if self._disabled:
            return
        seconds = self.ttl_seconds if ttl is None else int(ttl)
        if seconds <= 0:
            raise InvalidInputError(f"cache TTL must be positive seconds, got {ttl!r}")
        try:
            blob = encode_result(result)
        except (TypeError, ValueError, pa.ArrowException) as e:
            log.warning("not caching %s: result cannot be serialised (%s)", key, e)
            return
        try:
            self.client.set(key, blob, ex=seconds)
        except _UNAVAILABLE as e:
            self._unavailable(e)
        except redis.exceptions.RedisError as e:
            log.warning("cache write of %s failed (%s)", key, e)

    def _scan(self, match: str) -> Iterator[bytes]:
        yield from self.client.scan_iter(match=match, count=_UNLINK_BATCH)

    def invalidate_symbol(self, exchange: str, symbol: str) -> int:
        """Delete every cached backtest of ``symbol`` on ``exchange``; return how many.

        Walks the keyspace with ``SCAN`` (incremental, never blocks Redis like ``KEYS``) and
        ``UNLINK``s in batches of 500 (freed in the background)."""
        prefix = symbol_prefix(exchange, symbol)
        if self._disabled:
            return 0
        deleted = 0
        batch: list[bytes] = []
        try:
            for key in self._scan(prefix + "*"):
                batch.append(key)
                if len(batch) >= _UNLINK_BATCH:
                    deleted += int(self.client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(self.client.unlink(*batch))
        except _UNAVAILABLE as e:
            self._unavailable(e)
        log.info("invalidated %d cached backtests of %s %s", deleted, exchange, symbol)
        return deleted

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()


def open_cache(settings: Settings) -> BacktestCache | NullCache:
    """The cache the settings ask for: Redis at ``CRYPTOTA_REDIS_URL``, else :class:`NullCache`.
    Nothing connects here; the first lookup does."""
    if not settings.redis_url:
        return NullCache()
    return BacktestCache.from_url(settings.redis_url, ttl_seconds=settings.cache_ttl_seconds)


def cached_backtest(
    cache: ResultCache, key: str, compute: Callable[[], BacktestResult]
) -> tuple[BacktestResult, bool]:
    """The cached result for ``key`` and True, or ``compute()``'s (which is then cached) and
    False: the caller learns whether this lookup hit, whatever else shares the cache."""
    found = cache.get(key)
    if found is not None:
        return found, True
    result = compute()
    cache.set(key, result)
    return result, False
