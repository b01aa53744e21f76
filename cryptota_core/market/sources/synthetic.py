"""A seeded, deterministic synthetic market, for demos, tests and offline work.

Its data is labelled ``exchange="synthetic"`` everywhere so it can never pass for Binance data.

The one property everything else rests on: a candle depends only on (seed, symbol, interval,
open_time), never on the window asked for. Fetching January and then one day of it gives the same
candles, a nightly ingestion of day N agrees with a backfill that covered it, and the close of one
candle is exactly the open of the next. The generator gets there in two layers:

1. A day-level process, from a fixed origin (2017-01-01), one draw per UTC day from a stream
   seeded by (seed, symbol): a GARCH(1,1) variance with fat-tailed shocks drives a log price that
   mean-reverts slowly to the symbol's level. It fixes each day's open and its total move, and is
   cheap enough (thousands of days) to recompute from the origin every time.
2. An intraday path per day, seeded by (seed, symbol, day): 1,440 one-minute log returns with an
   intraday GARCH(1,1) on top of a U-shaped seasonal variance, bridged (variance-weighted) so they
   add up exactly to that day's move. Highs and lows are sampled from the exact distribution of a
   Brownian bridge's extremes; volume follows the seasonality and the volatility; trades and the
   taker share follow volume and the return.

Every longer interval is aggregated from the 1m path, so 1h candles equal the resampled 1m ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

import numba
import numpy as np
import pandas as pd

from cryptota_core.market.frame import (
    CANDLE_COLUMNS,
    candle_frame_from_arrays,
    empty_candle_frame,
    normalise_symbol,
)
from cryptota_core.market.intervals import interval_ms, parse_window, to_utc_timestamp

ORIGIN = pd.Timestamp("2017-01-01", tz="UTC")
"""The synthetic market opens here; there are no candles before it (a Sunday, Binance's year)."""

_ORIGIN_MS = int(ORIGIN.value // 1_000_000)
_DAY_MS = 86_400_000
_MINUTE_MS = 60_000
_MINUTES = 1440
_BLOCK_DAYS = 1024
_CHUNK_DAYS = 64
"""Days generated at once: bounds memory for multi-year requests of coarse intervals."""

# Day level: GARCH(1,1) persistence and the mean-reversion speed of the log price. A half-life of
# six months leaves room for trends yet keeps a symbol within about a factor two of its level
# (BTC in the tens of thousands): the stationary s.d. of the log price is about 0.36.
_DAY_ALPHA, _DAY_BETA = 0.10, 0.85
_DAY_KAPPA = np.log(2) / 180
_DAY_SHOCK_DF = 5.0
# Minute level: intraday GARCH on the seasonal variance; alpha sets how strongly a shock raises the
# next minutes' volatility, which is what makes absolute returns autocorrelated.
_MIN_ALPHA, _MIN_BETA = 0.10, 0.85
_WEEKEND_VARIANCE = 0.6
_WEEKEND_VOLUME = 0.7


@dataclass(frozen=True)
class _Profile:
    """What makes one symbol look like itself: price level, volatility, liquidity, tick sizes."""

    key: int
    level: float
    annual_vol: float
    notional_per_minute: float
    trade_notional: float
    price_decimals: int
    qty_decimals: int


_KNOWN: dict[str, tuple[float, float, float]] = {
    "BTCUSDT": (40_000.0, 0.60, 1_500_000.0),
    "ETHUSDT": (2_500.0, 0.75, 600_000.0),
}
"""Level, annual volatility and quote notional per minute of the symbols users know by heart."""


@lru_cache(maxsize=256)
def _profile(symbol: str) -> _Profile:
    digest = hashlib.blake2b(symbol.encode(), digest_size=32, person=b"cryptota-synth").digest()
    key = int.from_bytes(digest[:8], "little")
    u = [int.from_bytes(digest[8 + 4 * i : 12 + 4 * i], "little") / 2**32 for i in range(4)]
    if symbol in _KNOWN:
        level, annual_vol, notional = _KNOWN[symbol]
    else:
        level = float(10 ** (-2 + 5 * u[0]))
        annual_vol = 0.6 + 0.6 * u[1]
        notional = float(10 ** (3.5 + 2 * u[2]))
    magnitude = int(np.floor(np.log10(level)))
    return _Profile(
        key=key,
        level=level,
        annual_vol=annual_vol,
        notional_per_minute=notional,
        trade_notional=200.0 + 800.0 * u[3],
        price_decimals=int(np.clip(6 - magnitude, 0, 8)),
        qty_decimals=int(np.clip(magnitude + 1, 0, 8)),
    )


def _seed_word(seed: int) -> int:
    """SeedSequence wants non-negative entropy; fold any Python int into 64 bits."""
    return seed % (1 << 64)


@numba.njit(cache=True)
def _daily_path_nb(
    shocks: np.ndarray,
    weekday_factor: np.ndarray,
    log_level: float,
    daily_var: float,
    kappa: float,
    alpha: float,
    beta: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Log open of every day (plus the close of the last) and the variance of each day's move."""
    n = shocks.shape[0]
    log_open = np.empty(n + 1)
    move_var = np.empty(n)
    log_open[0] = log_level
    omega = daily_var * (1.0 - alpha - beta)
    h = daily_var
    for d in range(n):
        var = h * weekday_factor[d]
        move_var[d] = var
        log_open[d + 1] = log_open[d] + kappa * (log_level - log_open[d]) + np.sqrt(var) * shocks[d]
        h = omega + alpha * h * shocks[d] * shocks[d] + beta * h
    return log_open, move_var


@numba.njit(cache=True)
def _intraday_nb(
    shocks: np.ndarray,
    season: np.ndarray,
    day_var: np.ndarray,
    day_move: np.ndarray,
    alpha: float,
    beta: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Minute log returns per day (rows) and their volatility.

    A multiplicative intraday GARCH: variance = day variance x seasonal weight x q, where q has
    mean one and reacts to the last standardised shock. The returns are then bridged so each
    day's sum equals ``day_move`` exactly; the correction is spread in proportion to variance, the
    exact conditional mean of independent Gaussian steps given their sum.
    """
    n_days, m = shocks.shape
    returns = np.empty((n_days, m))
    sigma = np.empty((n_days, m))
    for d in range(n_days):
        q = 1.0
        total = 0.0
        var_total = 0.0
        for t in range(m):
            if t > 0:
                z_prev = shocks[d, t - 1]
                q = (1.0 - alpha - beta) + alpha * q * z_prev * z_prev + beta * q
            var = day_var[d] * season[t] * q
            s = np.sqrt(var)
            sigma[d, t] = s
            r = s * shocks[d, t]
            returns[d, t] = r
            total += r
            var_total += var
        shift = (total - day_move[d]) / var_total
        for t in range(m):
            returns[d, t] -= sigma[d, t] * sigma[d, t] * shift
    return returns, sigma


def _seasonal_variance() -> np.ndarray:
    """Share of a day's variance falling in each minute: highest around the 14-16 UTC US open,
    lowest in the Asian late evening, with a small burst at the top of each hour."""
    minute = np.arange(_MINUTES, dtype="float64")
    hour = minute / 60.0
    weights = 1.0 + 0.45 * np.cos(2 * np.pi * (hour - 15.0) / 24.0)
    weights *= 1.0 + 0.8 * np.exp(-(minute % 60) / 2.0)
    return weights / weights.sum()


_SEASON = _seasonal_variance()
_SEASON_VOLUME = _SEASON * _MINUTES  # mean one: the same U-shape scales volume


@lru_cache(maxsize=64)
def _day_level(seed_word: int, symbol: str, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Day opens (log) and move variances for the first ``n_blocks`` x 1024 days. Shocks come in
    independently seeded blocks and the recursion is causal, so a longer horizon never changes an
    earlier day."""
    profile = _profile(symbol)
    blocks = []
    for block in range(n_blocks):
        rng = np.random.default_rng([seed_word, profile.key, 1, block])
        t = rng.standard_t(_DAY_SHOCK_DF, _BLOCK_DAYS) * np.sqrt(
            (_DAY_SHOCK_DF - 2) / _DAY_SHOCK_DF
        )
        blocks.append(np.clip(t, -8.0, 8.0))
    shocks = np.concatenate(blocks)
    weekday = (np.arange(len(shocks)) + 6) % 7  # the origin is a Sunday; Monday = 0
    # Normalised by the weekly mean so the annual variance is the profile's.
    factor = np.where(weekday >= 5, _WEEKEND_VARIANCE, 1.0) / ((5 + 2 * _WEEKEND_VARIANCE) / 7)
    daily_var = profile.annual_vol**2 / 365.0
    return _daily_path_nb(
        shocks,
        factor,
        float(np.log(profile.level)),
        daily_var,
        float(_DAY_KAPPA),
        _DAY_ALPHA,
        _DAY_BETA,
    )


def _round_price(values: np.ndarray, decimals: int) -> np.ndarray:
    tick = 10.0**-decimals
    return np.maximum(np.round(values, decimals), tick)


def _minute_candles(
    seed_word: int, symbol: str, first_day: int, n_days: int
) -> dict[str, np.ndarray]:
    """The 1m candles of ``n_days`` whole UTC days from day ``first_day`` (days since the origin),
    as flat column arrays. Every value of a day derives from that day's own stream and the day
    level only, which is what makes candles independent of the window asked for."""
    profile = _profile(symbol)
    last_day = first_day + n_days
    log_open, move_var = _day_level(seed_word, symbol, last_day // _BLOCK_DAYS + 1)
    day_open = log_open[first_day:last_day]
    day_move = log_open[first_day + 1 : last_day + 1] - day_open
    day_var = move_var[first_day:last_day]

    shocks = np.empty((n_days, _MINUTES))
    uniforms = np.empty((n_days, 2, _MINUTES))
    noise = np.empty((n_days, 3, _MINUTES))
    for i in range(n_days):
        rng = np.random.default_rng([seed_word, profile.key, 2, first_day + i])
        rng.standard_normal(out=shocks[i])
        rng.random(out=uniforms[i])
        rng.standard_normal(out=noise[i])

    returns, sigma = _intraday_nb(shocks, _SEASON, day_var, day_move, _MIN_ALPHA, _MIN_BETA)
    log_close = day_open[:, None] + np.cumsum(returns, axis=1)
    log_close[:, -1] = log_open[first_day + 1 : last_day + 1]  # land exactly on tomorrow's open
    log_prev = np.concatenate((day_open[:, None], log_close[:, :-1]), axis=1)

    # Extremes of a Brownian bridge from a to b with variance s^2: max = (a+b)/2 +
    # sqrt((b-a)^2/4 - s^2 ln(U)/2), and symmetrically for the min, with U uniform on (0, 1]
    # (here 1 - u for the generator's u in [0, 1), hence log1p(-u)).
    mid = (log_prev + log_close) / 2
    half_sq = ((log_close - log_prev) / 2) ** 2
    var = sigma * sigma
    log_high = mid + np.sqrt(half_sq - var * np.log1p(-uniforms[:, 0]) / 2)
    log_low = mid - np.sqrt(half_sq - var * np.log1p(-uniforms[:, 1]) / 2)

    dec = profile.price_decimals
    close = _round_price(np.exp(log_close), dec)
    open_ = np.concatenate((_round_price(np.exp(day_open), dec)[:, None], close[:, :-1]), axis=1)
    high = np.maximum(_round_price(np.exp(log_high), dec), np.maximum(open_, close))
    low = np.minimum(_round_price(np.exp(log_low), dec), np.minimum(open_, close))

    # Activity: busier in the seasonal peak, on weekdays, in volatile days and minutes (q), and
    # on big moves; lognormal noise on top.
    weekday = (np.arange(first_day, last_day) + 6) % 7
    week_factor = np.where(weekday >= 5, _WEEKEND_VOLUME, 1.0)
    base_var = profile.annual_vol**2 / 365.0
    day_factor = week_factor * np.sqrt(day_var / base_var)
    q = var / (day_var[:, None] * _SEASON[None, :])
    standard = returns / sigma
    notional = (
        profile.notional_per_minute
        * _SEASON_VOLUME[None, :]
        * day_factor[:, None]
        * np.sqrt(q)
        * (0.6 + 0.4 * np.abs(standard))
        * np.exp(0.35 * noise[:, 0] - 0.06)
    )
    qdec = profile.qty_decimals
    step = 10.0**-qdec
    volume = np.maximum(np.round(notional / close, qdec), step)
    trades = np.maximum(
        np.rint(notional / profile.trade_notional * np.exp(0.25 * noise[:, 1] - 0.03)), 1
    ).astype("int64")
    buy_share = np.clip(0.5 + 0.2 * np.tanh(standard) + 0.06 * noise[:, 2], 0.03, 0.97)
    taker_buy_base = np.round(volume * buy_share, qdec)  # rounding is monotone: <= volume
    typical = (high + low + close) / 3
    return {
        "open": open_.ravel(),
        "high": high.ravel(),
        "low": low.ravel(),
        "close": close.ravel(),
        "volume": volume.ravel(),
        "quote_volume": (volume * typical).ravel(),
        "trades": trades.ravel(),
        "taker_buy_base": taker_buy_base.ravel(),
        "taker_buy_quote": (taker_buy_base * typical).ravel(),
    }


def _aggregate(columns: dict[str, np.ndarray], minutes: int) -> dict[str, np.ndarray]:
    """Roll 1m candles up into candles of ``minutes`` (a divisor of a day, so days align)."""
    if minutes == 1:
        return columns
    shaped = {c: v.reshape(-1, minutes) for c, v in columns.items()}
    out = {
        "open": shaped["open"][:, 0],
        "high": shaped["high"].max(axis=1),
        "low": shaped["low"].min(axis=1),
        "close": shaped["close"][:, -1],
    }
    for column in ("volume", "quote_volume", "trades", "taker_buy_base", "taker_buy_quote"):
        out[column] = shaped[column].sum(axis=1)
    return out


def generate_candles(
    symbol: str,
    interval: str,
    start: str | date | datetime | pd.Timestamp,
    end: str | date | datetime | pd.Timestamp,
    seed: int = 42,
    *,
    now: str | date | datetime | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Synthetic candles of ``symbol``/``interval`` opening in ``[start, end)`` as a canonical
    candle frame. Only candles closed by ``now`` (default: the wall clock) are produced, and none
    before :data:`ORIGIN`. Raises :class:`~cryptota_core.errors.InvalidInputError` for a bad
    symbol, interval or window."""
    symbol = normalise_symbol(symbol)
    step = interval_ms(interval)
    start_ts, end_ts = parse_window(start, end)
    now_ts = pd.Timestamp.now(tz="UTC") if now is None else to_utc_timestamp(now)

    start_ms = max(int(start_ts.value // 1_000_000), _ORIGIN_MS)
    first = -(-start_ms // step) * step
    # A candle opening at t has closed by now when t + step <= now.
    stop = min(int(end_ts.value // 1_000_000), int(now_ts.value // 1_000_000) - step + 1)
    if first >= stop:
        return empty_candle_frame()

    seed_word = _seed_word(seed)
    first_day = (first - _ORIGIN_MS) // _DAY_MS
    last_day = (stop - 1 - _ORIGIN_MS) // _DAY_MS
    minutes = step // _MINUTE_MS
    parts: list[dict[str, np.ndarray]] = []
    for chunk_start in range(first_day, last_day + 1, _CHUNK_DAYS):
        n_days = min(_CHUNK_DAYS, last_day + 1 - chunk_start)
        parts.append(_aggregate(_minute_candles(seed_word, symbol, chunk_start, n_days), minutes))
    columns = {c: np.concatenate([p[c] for p in parts]) for c in CANDLE_COLUMNS}
    day0_ms = _ORIGIN_MS + first_day * _DAY_MS
    lo = (first - day0_ms) // step
    hi = -(-(stop - day0_ms) // step)
    open_ms = day0_ms + np.arange(lo, hi, dtype="int64") * step
    return candle_frame_from_arrays(open_ms, {c: v[lo:hi] for c, v in columns.items()})


class SyntheticSource:
    """A :class:`~cryptota_core.market.sources.base.CandleSource` over the synthetic market.

    Same seed, same market: two processes (or a run and its retry) see identical candles."""

    exchange = "synthetic"

    def __init__(self, seed: int = 42) -> None:
        self.seed = seed

    def __repr__(self) -> str:
        return f"SyntheticSource(seed={self.seed})"

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        now: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """See :func:`generate_candles`; ``now`` pins the clock in tests."""
        return generate_candles(symbol, interval, start, end, self.seed, now=now)
