"""Performance metrics of a backtest: pure functions of an equity curve and a trades frame.

Conventions (DESIGN §6), shared by every function here:

- Crypto trades 24/7, so a year is 365 days and ``periods`` (the annualisation factor) is
  :func:`~cryptota_core.market.intervals.periods_per_year` of the candle interval
  (1m 525,600; 1h 8,760; 1d 365).
- Returns are simple per-bar returns of the equity curve (:func:`returns_from_equity`); the
  risk-free rate and every required return are 0.
- Wherever empyrical-reloaded has a metric, the function here computes the same number as
  empyrical called with ``annualization=periods`` (to 1e-9 relative; the tests check it). We do
  the arithmetic ourselves in NumPy so that empyrical stays a test-only dependency.
- Trade statistics follow backtesting.py's names and formulas where they overlap and count
  closed trades only (``is_open`` False); the open position at the end is reported separately.

The array-level functions return ``float`` and ``nan`` for an undefined value, so they compose in
vectorised code. :func:`compute_metrics` is the boundary to the results store and the UI: it
returns ``None`` for every undefined or non-finite value, never ``nan``, ``inf`` or a sentinel,
and it never raises on degenerate data (no trades, a flat or one-bar or empty curve).
docs/metrics.md defines every key. The statistics of a whole search (probabilistic and deflated
Sharpe ratio, probability of backtest overfitting) live in :mod:`cryptota_core.research.statistics`.
"""

from __future__ import annotations

import logging
import math

import numba
import numpy as np
import numpy.typing as npt
import pandas as pd

from cryptota_core.errors import InvalidInputError
from cryptota_core.market.intervals import interval_ms, periods_per_year
from cryptota_core.numbers import finite_or_none
from cryptota_core.trades import TRADE_COLUMNS

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

MS_PER_DAY = 86_400_000
DAILY_PERIODS_PER_YEAR = 365.0
"""Annualisation of the daily-resampled Sharpe ratio: 365 UTC days a year (DESIGN §6)."""

TAIL_CUTOFF = 0.05
"""The tail probability of ``var_5`` and ``cvar_5`` (empyrical's default cutoff)."""

ZERO_DISPERSION = 1e-12
"""Relative size below which a standard deviation is rounding noise (see ``_sample_std``)."""

METRIC_NAMES: tuple[str, ...] = (
    # returns
    "total_return",
    "annual_return",
    "buy_and_hold_return",
    "best_period_return",
    "worst_period_return",
    "equity_final",
    "equity_peak",
    # risk
    "annual_volatility",
    "downside_risk",
    "max_drawdown",
    "avg_drawdown",
    "max_drawdown_duration_bars",
    "max_drawdown_duration_days",
    "var_5",
    "cvar_5",
    "ulcer_index",
    # risk-adjusted
    "sharpe_ratio",
    "daily_sharpe_ratio",
    "sortino_ratio",
    "calmar_ratio",
    "omega_ratio",
    "tail_ratio",
    "stability",
    # benchmark
    "alpha",
    "beta",
    "information_ratio",
    # trades
    "trade_count",
    "open_trades",
    "win_rate",
    "profit_factor",
    "expectancy",
    "expectancy_pct",
    "sqn",
    "kelly_criterion",
    "avg_win",
    "avg_loss",
    "best_trade_pct",
    "worst_trade_pct",
    "avg_trade_pct",
    "max_consecutive_wins",
    "max_consecutive_losses",
    "avg_trade_duration_bars",
    "max_trade_duration_bars",
    "exposure_pct",
    "total_commission",
)
"""Every key :func:`compute_metrics` returns, in display order (returns, risk, risk-adjusted,
benchmark, trades). Stable: the results store and the UI key on these names."""


# --------------------------------------------------------------------------------------------
# Compiled kernels (NumPy arrays in, NumPy scalars/arrays out)
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def drawdown_episodes_nb(equity: FloatArray) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Duration (bars from the peak to the bar that regains it, or to the last bar if never
    regained) and depth (the lowest ``equity / peak - 1``, negative) of every drawdown episode.

    An episode starts at a bar that closes below the running peak and ends at the first bar
    whose equity is back at or above that peak, as backtesting.py's
    ``compute_drawdown_duration_peaks`` counts them (in bars rather than wall-clock time).
    """
    n = equity.shape[0]
    durations = np.empty(n, dtype=np.int64)
    depths = np.empty(n, dtype=np.float64)
    k = 0
    if n == 0:
        return durations[:0].copy(), depths[:0].copy()
    peak = equity[0]
    peak_i = 0
    trough = 0.0
    under = False
    for i in range(1, n):
        value = equity[i]
        if value >= peak:
            if under:
                durations[k] = i - peak_i
                depths[k] = trough
                k += 1
                under = False
            peak = value
            peak_i = i
            trough = 0.0
        else:
            dd = (value - peak) / peak
            if dd < trough:
                trough = dd
            under = True
    if under:
        durations[k] = n - 1 - peak_i
        depths[k] = trough
        k += 1
    return durations[:k].copy(), depths[:k].copy()


@numba.njit(cache=True, error_model="numpy")
def longest_run_nb(mask: npt.NDArray[np.bool_]) -> int:
    """Length of the longest run of consecutive True values (0 for an empty or all-False mask)."""
    best = 0
    current = 0
    for flag in mask:
        if flag:
            current += 1
            if current > best:
                best = current
        else:
            current = 0
    return best


# --------------------------------------------------------------------------------------------
# Returns and the empyrical-equivalent array functions
# --------------------------------------------------------------------------------------------


def returns_from_equity(equity: pd.Series) -> pd.Series:
    """Simple per-bar returns of an equity curve: ``equity.pct_change()`` without the first NaN.

    The first bar has no previous close, so a curve of n bars gives n - 1 returns; a curve of
    zero or one bar gives an empty series.
    """
    return equity.astype("float64").pct_change().iloc[1:]


def _as_array(returns: pd.Series | npt.ArrayLike) -> FloatArray:
    return np.asarray(returns, dtype=np.float64).ravel()


def wealth_from_returns(returns: npt.ArrayLike) -> FloatArray:
    """Growth of 1 unit: ``[1, (1+r0), (1+r0)(1+r1), ...]`` (n + 1 values). NaN returns count as
    0, as in empyrical's ``cum_returns``."""
    r = np.nan_to_num(_as_array(returns), nan=0.0)
    return np.concatenate(([1.0], np.cumprod(1.0 + r)))


def annual_return(returns: npt.ArrayLike, periods: float) -> float:
    """CAGR: ``prod(1 + r) ** (periods / n) - 1``, n the number of returns.

    Annualised by compounding over ``periods`` bars a year; equals ``empyrical.annual_return(r,
    annualization=periods)``. NaN for no returns (or a negative ending value).
    """
    r = _as_array(returns)
    if r.size < 1:
        return math.nan
    ending = float(np.nanprod(1.0 + r))
    return float(np.power(ending, periods / r.size) - 1.0)


def annual_volatility(returns: npt.ArrayLike, periods: float) -> float:
    """Sample standard deviation (ddof=1) of the returns times ``sqrt(periods)``.

    Equals ``empyrical.annual_volatility(r, annualization=periods)``. NaN under two returns.
    """
    r = _as_array(returns)
    if r.size < 2:
        return math.nan
    return float(np.nanstd(r, ddof=1) * periods**0.5)


def _sample_std(r: FloatArray) -> float:
    """Sample std (ddof=1), or exactly 0 when the values are equal up to rounding.

    A constant series has zero dispersion, but the returns of a constantly growing curve
    (``pct_change`` of ``1.01 ** k``) differ in their last bits, leaving a residue of ~1e-16
    that turns an infinite ratio into a number near 1e15. empyrical's ``_zero_dispersion_std``
    guards only the exactly-equal case; we also treat a std below ``ZERO_DISPERSION`` times the
    largest absolute value as zero (a per-bar Sharpe above 1e12 never comes from real data).
    """
    present = r[~np.isnan(r)]
    if present.size < 2:
        return math.nan
    std = float(np.std(present, ddof=1))
    if present.max() == present.min() or std <= ZERO_DISPERSION * float(np.abs(present).max()):
        return 0.0
    return std


def sharpe_ratio(returns: npt.ArrayLike, periods: float) -> float:
    """``mean(r) / std(r, ddof=1) * sqrt(periods)``, risk-free rate 0.

    Equals ``empyrical.sharpe_ratio(r, annualization=periods)``. NaN under two returns or with
    zero dispersion (the ratio is infinite or 0/0); unlike empyrical, a dispersion that is only
    rounding noise counts as zero (see ``_sample_std``).
    """
    r = _as_array(returns)
    if r.size < 2:
        return math.nan
    std = _sample_std(r)
    if std == 0.0 or math.isnan(std):
        return math.nan
    return float(np.nanmean(r) / std * math.sqrt(periods))


def downside_risk(returns: npt.ArrayLike, periods: float) -> float:
    """Root mean square of ``min(r, 0)`` over all returns (ddof=0) times ``sqrt(periods)``.

    Equals ``empyrical.downside_risk(r, required_return=0, annualization=periods)``. NaN for no
    returns.
    """
    r = _as_array(returns)
    if r.size < 1:
        return math.nan
    downside = np.clip(r, -np.inf, 0.0)
    return float(np.sqrt(np.nanmean(np.square(downside))) * math.sqrt(periods))


def sortino_ratio(returns: npt.ArrayLike, periods: float) -> float:
    """``mean(r) * periods / downside_risk(r, periods)`` (required return 0).

    Equals ``empyrical.sortino_ratio(r, annualization=periods)``. NaN under two returns or when
    no return is negative (zero downside risk).
    """
    r = _as_array(returns)
    if r.size < 2:
        return math.nan
    risk = downside_risk(r, periods)
    if risk == 0.0 or math.isnan(risk):
        return math.nan
    return float(np.nanmean(r) * periods / risk)


def max_drawdown(returns: npt.ArrayLike) -> float:
    """Largest peak-to-trough fall of the compounded returns, a negative fraction (0 if none).

    The starting value counts as a peak. Equals ``empyrical.max_drawdown(r)``; no annualisation.
    NaN for no returns.
    """
    r = _as_array(returns)
    if r.size < 1:
        return math.nan
    wealth = wealth_from_returns(r)
    peak = np.fmax.accumulate(wealth)
    return float(np.nanmin((wealth - peak) / peak))


def calmar_ratio(returns: npt.ArrayLike, periods: float) -> float:
    """``annual_return / |max_drawdown|``.

    Equals ``empyrical.calmar_ratio(r, annualization=periods)``. NaN when there is no drawdown
    (max drawdown 0), no returns, or the ratio is infinite.
    """
    mdd = max_drawdown(returns)
    if not mdd < 0.0:
        return math.nan
    value = annual_return(returns, periods) / abs(mdd)
    return math.nan if math.isinf(value) else value


def omega_ratio(returns: npt.ArrayLike) -> float:
    """Sum of positive returns over the absolute sum of negative returns (threshold 0).

    Equals ``empyrical.omega_ratio(r, annualization=periods)``: the threshold is the required
    return 0 de-annualised, which is 0 for any ``periods``. NaN under two returns or when no
    return is negative.
    """
    r = _as_array(returns)
    if r.size < 2:
        return math.nan
    gains = float(np.sum(r[r > 0.0]))
    losses = -float(np.sum(r[r < 0.0]))
    return gains / losses if losses > 0.0 else math.nan


def tail_ratio(returns: npt.ArrayLike) -> float:
    """``|95th percentile| / |5th percentile|`` of the returns (linear interpolation).

    Equals ``empyrical.tail_ratio(r)``; no annualisation. NaN for no returns or a zero 5th
    percentile.
    """
    r = _as_array(returns)
    r = r[~np.isnan(r)]
    if r.size < 1:
        return math.nan
    left = abs(float(np.percentile(r, 5)))
    right = abs(float(np.percentile(r, 95)))
    return right / left if left > 0.0 else math.nan


def value_at_risk(returns: npt.ArrayLike, cutoff: float = TAIL_CUTOFF) -> float:
    """Historical VaR: the ``cutoff`` percentile of per-bar returns (linear interpolation), a
    negative fraction for a loss. Per bar, not annualised. Equals
    ``empyrical.value_at_risk(r, cutoff)``. NaN for no returns."""
    r = _as_array(returns)
    if r.size < 1:
        return math.nan
    return float(np.percentile(r, 100 * cutoff))


def conditional_value_at_risk(returns: npt.ArrayLike, cutoff: float = TAIL_CUTOFF) -> float:
    """Historical CVaR (expected shortfall): mean of the ``int((n - 1) * cutoff) + 1`` lowest
    per-bar returns. Per bar, not annualised. Equals
    ``empyrical.conditional_value_at_risk(r, cutoff)``. NaN for no returns."""
    r = _as_array(returns)
    r = r[~np.isnan(r)]
    if r.size < 1:
        return math.nan
    k = int((r.size - 1) * cutoff)
    return float(np.mean(np.partition(r, k)[: k + 1]))


def stability_of_timeseries(returns: npt.ArrayLike) -> float:
    """R² of an ordinary least-squares line through the cumulative log returns against bar
    number (population moments, ddof=0, as ``scipy.stats.linregress``).

    Equals ``empyrical.stability_of_timeseries(r)``; no annualisation. NaN under two returns or
    for a perfectly flat curve (linregress's r is 0/0 there).
    """
    r = _as_array(returns)
    if r.size < 2:
        return math.nan
    r = r[~np.isnan(r)]
    if r.size < 2:
        return math.nan
    y = np.cumsum(np.log1p(r))
    x = np.arange(y.size, dtype=np.float64)
    xm = x - x.mean()
    ym = y - y.mean()
    ssxm = float(np.dot(xm, xm)) / y.size
    ssym = float(np.dot(ym, ym)) / y.size
    ssxym = float(np.dot(xm, ym)) / y.size
    if ssxm == 0.0 or ssym == 0.0:
        rvalue = math.nan if ssxym == 0.0 else 0.0
    else:
        rvalue = min(1.0, max(-1.0, ssxym / math.sqrt(ssxm * ssym)))
    return rvalue**2


def alpha_beta(
    returns: npt.ArrayLike, benchmark_returns: npt.ArrayLike, periods: float
) -> tuple[float, float]:
    """CAPM alpha (annualised) and beta of the returns against the benchmark's returns.

    beta = population covariance / population variance of the benchmark (ddof=0, over bars
    where both are present); alpha = ``(1 + mean(r - beta * b)) ** periods - 1``. Equals
    ``empyrical.alpha_beta(r, b, annualization=periods)``. Both NaN under two returns; beta (and
    so alpha) NaN when the benchmark does not move (variance below 1e-30).
    """
    r = _as_array(returns)
    b = _as_array(benchmark_returns)
    if r.size < 2 or b.size != r.size:
        return math.nan, math.nan
    independent = np.where(np.isnan(r), np.nan, b)
    if np.all(np.isnan(independent)):
        return math.nan, math.nan
    residual = independent - np.nanmean(independent)
    covariance = float(np.nanmean(residual * r))
    variance = float(np.nanmean(np.square(residual)))
    if not variance >= 1.0e-30:
        return math.nan, math.nan
    beta = covariance / variance
    mean_alpha = float(np.nanmean(r - beta * b))
    alpha = float(np.power(1.0 + mean_alpha, periods) - 1.0)
    return alpha, beta


def information_ratio(
    returns: npt.ArrayLike, benchmark_returns: npt.ArrayLike, periods: float
) -> float:
    """Annualised information ratio: ``mean(r - b) / std(r - b, ddof=1) * sqrt(periods)``.

    Equals ``empyrical.excess_sharpe(r, b) * sqrt(periods)`` (empyrical's excess Sharpe is the
    per-period version). NaN under two returns or when the active return never varies (up to
    rounding noise, see ``_sample_std``).
    """
    r = _as_array(returns)
    b = _as_array(benchmark_returns)
    if r.size < 2 or b.size != r.size:
        return math.nan
    active = r - b
    std = _sample_std(active)
    if std == 0.0 or math.isnan(std):
        return math.nan
    return float(np.nanmean(active) / std * math.sqrt(periods))


def daily_returns(equity: pd.Series) -> pd.Series:
    """Returns of the equity at UTC daily closes: the last value of each calendar day (by bar
    open time), days without bars skipped, first day dropped. Empty unless the index is a
    DatetimeIndex."""
    if not isinstance(equity.index, pd.DatetimeIndex) or equity.empty:
        return pd.Series([], dtype="float64")
    index = equity.index
    utc = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    closes = equity.set_axis(utc).resample("1D").last().dropna()
    return returns_from_equity(closes)


def daily_sharpe_ratio(equity: pd.Series) -> float:
    """Sharpe ratio of :func:`daily_returns`, annualised with 365 days (ddof=1).

    Comparable across candle intervals, unlike the per-bar :func:`sharpe_ratio`; for 1d candles
    the two are equal. NaN with fewer than two daily returns (three UTC days).
    """
    return sharpe_ratio(daily_returns(equity), DAILY_PERIODS_PER_YEAR)


# --------------------------------------------------------------------------------------------
# Trade statistics
# --------------------------------------------------------------------------------------------


def _utc_ns(values: pd.Series | pd.Index) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Nanoseconds since the epoch (UTC) and a NaT mask: pandas 3 may carry any resolution."""
    index = pd.DatetimeIndex(values)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return index.as_unit("ns").asi8, np.asarray(index.isna())


def exposure_bars_from_trades(index: pd.Index, trades: pd.DataFrame) -> float:
    """Bars of ``index`` whose close sees an open position, counting each bar once.

    A trade holds the bars with open time in ``[entry_time, exit_time)``: it fills at the open
    of its entry bar and exits at the open of its exit bar, so it is flat at that bar's close.
    An open trade holds every bar from its entry to the end. NaN unless ``index`` is a
    DatetimeIndex.
    """
    n = len(index)
    if not isinstance(index, pd.DatetimeIndex):
        return math.nan
    if n == 0 or trades.empty:
        return 0.0
    times, _ = _utc_ns(index)
    entry, entry_nat = _utc_ns(trades["entry_time"])
    exit_, exit_nat = _utc_ns(trades["exit_time"])
    is_open = trades["is_open"].fillna(False).to_numpy(dtype=bool)
    keep = ~entry_nat
    starts = np.searchsorted(times, entry[keep], side="left")
    ends = np.where((is_open | exit_nat)[keep], n, np.searchsorted(times, exit_[keep], side="left"))
    ends = np.maximum(ends, starts)
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, starts, 1)
    np.add.at(delta, ends, -1)
    return float(np.count_nonzero(np.cumsum(delta[:n]) > 0))


def trade_statistics(trades: pd.DataFrame) -> dict[str, float]:
    """Statistics of the closed trades (``is_open`` False), in exit order; NaN where undefined.

    A win is ``pnl > 0`` and a loss ``pnl < 0``; a break-even trade is neither (it counts in
    ``trade_count`` and breaks a streak). Formulas follow backtesting.py's ``compute_stats``
    (SQN, Kelly, win rate, best/worst/geometric-average trade) with the deviations listed in
    docs/metrics.md: profit factor and expectancy are in quote currency (``*_pct`` variants
    over ``pnl_pct``), durations are in bars.
    """
    missing = [c for c in TRADE_COLUMNS if c not in trades.columns]
    if missing:
        raise InvalidInputError(
            f"trades frame lacks columns {missing}: build it with TRADE_COLUMNS "
            "(cryptota_core.trades)"
        )
    is_open = trades["is_open"].fillna(False).to_numpy(dtype=bool)
    closed = trades.loc[~is_open].sort_values("exit_time", kind="stable")
    pnl = closed["pnl"].to_numpy(dtype=np.float64)
    pct = closed["pnl_pct"].to_numpy(dtype=np.float64)
    bars = closed["bars"].to_numpy(dtype=np.float64)
    n = pnl.size
    wins = pnl > 0.0
    losses = pnl < 0.0
    gross_profit = float(pnl[wins].sum())
    gross_loss = -float(pnl[losses].sum())

    win_rate = float(wins.mean()) if n else math.nan
    avg_win = float(pnl[wins].mean()) if wins.any() else math.nan
    avg_loss = float(pnl[losses].mean()) if losses.any() else math.nan
    std = float(np.std(pnl, ddof=1)) if n >= 2 else math.nan
    growth = 1.0 + pct
    # backtesting.py's geometric mean gives 0 when a trade lost 100 % or more; it is undefined.
    geometric = n > 0 and bool(np.all(growth > 0.0))
    return {
        "trade_count": float(n),
        "open_trades": float(np.count_nonzero(is_open)),
        "win_rate": win_rate,
        "profit_factor": gross_profit / gross_loss if gross_loss > 0.0 else math.nan,
        "expectancy": float(pnl.mean()) if n else math.nan,
        "expectancy_pct": float(pct.mean()) if n else math.nan,
        "sqn": math.sqrt(n) * float(pnl.mean()) / std if std > 0.0 else math.nan,
        "kelly_criterion": win_rate - (1.0 - win_rate) / (avg_win / -avg_loss),
        "avg_win": avg_win,
        "avg_loss": avg_loss,
        "best_trade_pct": float(pct.max()) if n else math.nan,
        "worst_trade_pct": float(pct.min()) if n else math.nan,
        "avg_trade_pct": float(np.expm1(np.mean(np.log(growth)))) if geometric else math.nan,
        "max_consecutive_wins": float(longest_run_nb(wins)),
        "max_consecutive_losses": float(longest_run_nb(losses)),
        "avg_trade_duration_bars": float(bars.mean()) if n else math.nan,
        "max_trade_duration_bars": float(bars.max()) if n else math.nan,
        # Fees actually paid, the open position's entry fill included: a cost of the run, not a
        # statistic of closed trades.
        "total_commission": float(trades["commission"].sum()),
    }


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


def compute_metrics(
    equity: pd.Series,
    trades: pd.DataFrame,
    *,
    interval: str,
    benchmark: pd.Series | None = None,
    exposure_bars: int | None = None,
) -> dict[str, float | None]:
    """Every metric of one backtest, keyed by the names in :data:`METRIC_NAMES`.

    ``equity`` is the portfolio value at every bar close (DatetimeIndex, UTC), starting with the
    cash; ``trades`` a TRADE_COLUMNS frame; ``interval`` the candle interval, which sets the
    annualisation ``periods_per_year``. ``benchmark`` (buy-and-hold equity or close prices) is
    aligned on ``equity``'s index; without it the benchmark metrics are None.
    ``exposure_bars`` (bars with a position) is derived from the trades when not given.

    Values are floats, or None where the metric is undefined or not finite (see
    docs/metrics.md for when). Degenerate inputs never raise; a bad ``interval`` or a trades
    frame without the TRADE_COLUMNS raises :class:`InvalidInputError`.
    """
    periods = periods_per_year(interval)
    equity = equity.astype("float64")
    missing = int(equity.isna().sum())
    if missing:
        log.warning("equity has %d NaN values; dropped them before computing metrics", missing)
        equity = equity.dropna()
    values: dict[str, float] = {}
    with np.errstate(all="ignore"):
        values.update(_equity_metrics(equity, periods, interval))
        values.update(_benchmark_metrics(equity, benchmark, periods))
        values.update(trade_statistics(trades))
        n_bars = len(equity)
        if exposure_bars is None:
            held = exposure_bars_from_trades(equity.index, trades)
        else:
            held = float(exposure_bars)
        values["exposure_pct"] = held / n_bars if n_bars else math.nan
    return {name: finite_or_none(values[name]) for name in METRIC_NAMES}


def _equity_metrics(equity: pd.Series, periods: float, interval: str) -> dict[str, float]:
    """Return, risk and risk-adjusted metrics of the equity curve alone."""
    e = equity.to_numpy(dtype=np.float64)
    r = returns_from_equity(equity).to_numpy(dtype=np.float64)
    has_returns = r.size >= 1
    durations, depths = drawdown_episodes_nb(e)
    max_duration = float(durations.max()) if durations.size else 0.0
    if e.size:
        peak = np.fmax.accumulate(e)
        ulcer = float(np.sqrt(np.mean(np.square((e - peak) / peak))))
    else:
        ulcer = math.nan
    return {
        "total_return": float(e[-1] / e[0] - 1.0) if e.size else math.nan,
        "annual_return": annual_return(r, periods),
        "best_period_return": float(np.nanmax(r)) if has_returns else math.nan,
        "worst_period_return": float(np.nanmin(r)) if has_returns else math.nan,
        "equity_final": float(e[-1]) if e.size else math.nan,
        "equity_peak": float(e.max()) if e.size else math.nan,
        "annual_volatility": annual_volatility(r, periods),
        "downside_risk": downside_risk(r, periods),
        "max_drawdown": max_drawdown(r),
        "avg_drawdown": float(depths.mean()) if depths.size else math.nan,
        "max_drawdown_duration_bars": max_duration if has_returns else math.nan,
        "max_drawdown_duration_days": (
            max_duration * interval_ms(interval) / MS_PER_DAY if has_returns else math.nan
        ),
        "var_5": value_at_risk(r),
        "cvar_5": conditional_value_at_risk(r),
        "ulcer_index": ulcer if has_returns else math.nan,
        "sharpe_ratio": sharpe_ratio(r, periods),
        "daily_sharpe_ratio": daily_sharpe_ratio(equity),
        "sortino_ratio": sortino_ratio(r, periods),
        "calmar_ratio": calmar_ratio(r, periods),
        "omega_ratio": omega_ratio(r),
        "tail_ratio": tail_ratio(r),
        "stability": stability_of_timeseries(r),
    }


def _benchmark_metrics(
    equity: pd.Series, benchmark: pd.Series | None, periods: float
) -> dict[str, float]:
    """Buy-and-hold return, alpha, beta and information ratio against ``benchmark``."""
    if benchmark is None or equity.empty:
        keys = ("buy_and_hold_return", "alpha", "beta", "information_ratio")
        return dict.fromkeys(keys, math.nan)
    bench = benchmark.astype("float64")
    if not bench.index.equals(equity.index):
        bench = bench.reindex(equity.index)
    present = bench.dropna().to_numpy(dtype=np.float64)
    hold = float(present[-1] / present[0] - 1.0) if present.size else math.nan
    r = returns_from_equity(equity).to_numpy(dtype=np.float64)
    b = returns_from_equity(bench).to_numpy(dtype=np.float64)
    alpha, beta = alpha_beta(r, b, periods)
    return {
        "buy_and_hold_return": hold,
        "alpha": alpha,
        "beta": beta,
        "information_ratio": information_ratio(r, b, periods),
    }
