"""Overfitting statistics for the results of a strategy optimisation.

A parameter search that keeps its best trial reports the luckiest of many noisy estimates. The
statistics here say how much of the winner's Sharpe ratio survives that selection:

- :func:`probabilistic_sharpe_ratio` (PSR) and :func:`minimum_track_record_length` (MinTRL) —
  Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier", Journal of Risk 15(2):
  the probability that the true Sharpe ratio exceeds a benchmark, given the length, skewness and
  fat tails of the sample, and the sample length needed for a given confidence.
- :func:`expected_max_sharpe` and :func:`deflated_sharpe_ratio` (DSR) — Bailey & López de Prado
  (2014), "The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest Overfitting and
  Non-Normality", Journal of Portfolio Management 40(5): the PSR against the Sharpe ratio the
  best of N skill-less trials reaches by luck.
- :func:`haircut_sharpe_ratio` — Harvey & Liu (2015), "Backtesting", Journal of Portfolio
  Management 42(1): the Sharpe ratio left once its p-value is corrected for N tests
  (Bonferroni); :func:`null_sharpe_variance`, the variance of a skill-less trial's Sharpe
  estimate, which the optimisation's DSR uses as V; :func:`effective_observations`, the
  autocorrelation-adjusted sample size.
- :func:`pbo_from_returns`, :func:`pbo_from_blocks` and :func:`pbo_by_convention` — Bailey,
  Borwein, López de Prado & Zhu (2015), "The Probability of Backtest Overfitting", Journal of
  Computational Finance 20(4): the probability of backtest overfitting (PBO) by combinatorially
  symmetric cross-validation (CSCV), with a tie tolerance and both flat-half conventions.

Conventions, shared by every function here:

- Sharpe ratios are **per period** (per bar): ``mean(r) / std(r, ddof=1)`` of simple returns,
  risk-free rate 0, **not annualised**. Annualise for display only (``· sqrt(periods per year)``,
  DESIGN §6); every input and output Sharpe ratio here is per period.
- ``skew`` is the sample skewness and ``kurtosis`` the **non-excess (Pearson)** kurtosis (3 for
  a normal distribution), both population moments (ddof=0, as ``scipy.stats.skew`` /
  ``scipy.stats.kurtosis(fisher=False)`` with ``bias=True``).
- A value that is undefined for legitimate but degenerate data (too few returns, zero
  dispersion) is NaN and never raises. :class:`~cryptota_core.errors.InvalidInputError` is raised
  only for input that cannot be right (fewer than two observations passed to a formula, a
  kurtosis no distribution has, an odd number of CSCV blocks).

docs/metrics.md ("Optimisation statistics") defines each statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt

from cryptota_core.errors import InvalidInputError
from cryptota_core.kernels.cscv import cscv_nb

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SIGNIFICANCE = 0.95
"""A DSR above this is significant: the true Sharpe ratio beats the luck of the search with 95 %
confidence (Bailey & López de Prado 2014)."""

ZERO_DISPERSION = 1e-12
"""A std of returns below this times the largest absolute return is rounding noise, as in
:mod:`cryptota_core.metrics`: the Sharpe ratio is then undefined."""

BLOCK_ZERO_DISPERSION = 1e-8
"""From block sums, a sum of squared deviations below this times the sum of squares is rounding
noise (a per-bar Sharpe ratio above 10⁴): summing 525,600 squares in float64 can be off by ~1e-10
relative, so the threshold on sums has to sit far above :data:`ZERO_DISPERSION`."""

DEFAULT_BLOCKS = 16
"""CSCV blocks: C(16, 8) = 12,870 combinations, the paper's choice."""

MAX_BLOCKS = 20
"""At most C(20, 10) = 184,756 combinations; more would take hours on 10,000 sets."""

MAX_CHUNK_ELEMENTS = 1 << 20
"""Sets × combinations evaluated at once in :func:`pbo_from_blocks` (~100 MB of temporaries)."""

PBO_RELATIVE_TOLERANCE = 1e-9
"""Two Sharpe ratios within this distance relative to the chosen set's (plus
:data:`PBO_ABSOLUTE_TOLERANCE`) are a tie in CSCV: summing a year of 1m returns in another order
moves a Sharpe ratio by at most about N·ε ≈ 6e-11 relative (N = 525,600), so sets that differ by
less than 1e-9 are the same set for ranking, and the one with the lower index is chosen in sample
whatever the summation order."""

PBO_ABSOLUTE_TOLERANCE = 1e-12
"""The absolute part of the CSCV tie tolerance: per-period Sharpe ratios of about zero (a set that
barely moves) differ by rounding only below this."""

FlatHalf = Literal["worst", "zero"]
"""How CSCV ranks a set whose Sharpe ratio is undefined over a half (it did not trade there, so
its returns have no dispersion): ``worst`` ranks it below every defined set, ``zero`` gives it
the Sharpe ratio of its (zero) return."""

FLAT_HALF_CONVENTIONS: tuple[FlatHalf, ...] = ("worst", "zero")

_NORMAL = NormalDist()
_KURTOSIS_TOLERANCE = 1e-9


# --------------------------------------------------------------------------------------------
# Probabilistic Sharpe ratio and minimum track record length (Bailey & López de Prado 2012)
# --------------------------------------------------------------------------------------------


def _check_moments(skew: float, kurtosis: float) -> None:
    """Pearson's inequality: every distribution has kurtosis ≥ 1 + skew². A value below it is
    almost always an excess kurtosis passed where the non-excess one belongs."""
    floor = 1.0 + skew * skew
    if kurtosis < floor - _KURTOSIS_TOLERANCE * floor:
        raise InvalidInputError(
            f"kurtosis={kurtosis} with skew={skew} is below 1 + skew² = {floor:.6g}, which no "
            "distribution has; pass the non-excess (Pearson) kurtosis: excess kurtosis + 3, "
            "3 for a normal"
        )


def _sharpe_variance_term(sharpe: float, skew: float, kurtosis: float) -> float:
    """``1 − γ3·SR + (γ4 − 1)/4·SR²``: (n − 1) times the variance of the Sharpe estimator under
    non-normal i.i.d. returns (Mertens 2002, as used by Bailey & López de Prado 2012). Never
    negative when kurtosis ≥ 1 + skew², since it is then at least (1 − γ3·SR/2)²."""
    return 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe


def probabilistic_sharpe_ratio(
    sharpe: float, n_obs: int, skew: float, kurtosis: float, benchmark: float = 0.0
) -> float:
    """Probability that the true Sharpe ratio exceeds ``benchmark`` (Bailey & López de Prado
    2012, eq. 11), given the length, skewness and kurtosis of the sample it was measured on.

    ``PSR = Φ((SR − SR*) · √(n − 1) / √(1 − γ3·SR + (γ4 − 1)/4 · SR²))``.

    Args:
        sharpe: SR, the **per-period** (not annualised) Sharpe ratio, ``mean / std(ddof=1)``.
        n_obs: n, the number of returns SR was measured on (at least 2).
        skew: γ3, the skewness of those returns (population moment, ddof=0).
        kurtosis: γ4, their **non-excess (Pearson)** kurtosis: 3 for a normal distribution,
            excess kurtosis + 3 (population moment, ddof=0).
        benchmark: SR*, per period like ``sharpe``.

    A high PSR needs a high Sharpe ratio *and* a long sample; negative skew and fat tails widen
    the Sharpe ratio's standard error and lower the PSR. SR = SR* gives exactly 0.5.

    Returns NaN when any argument is NaN or infinite, or the variance term is 0 (only at the
    boundary kurtosis = 1 + skew²). Raises :class:`InvalidInputError` for ``n_obs < 2`` and for
    a kurtosis below ``1 + skew²`` (an excess kurtosis passed by mistake).
    """
    if n_obs < 2:
        raise InvalidInputError(
            f"n_obs={n_obs}: a Sharpe ratio needs at least 2 returns; pass the number of "
            "per-period returns it was measured on"
        )
    if not all(math.isfinite(v) for v in (sharpe, skew, kurtosis, benchmark)):
        return math.nan
    _check_moments(skew, kurtosis)
    variance_term = _sharpe_variance_term(sharpe, skew, kurtosis)
    if not variance_term > 0.0:
        return math.nan
    z = (sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance_term)
    return _NORMAL.cdf(z)


def _return_moments(returns: npt.ArrayLike) -> tuple[float, float, float, int]:
    """Per-period Sharpe ratio (ddof=1), skewness, non-excess kurtosis (population moments) and
    the number of returns, NaN values dropped. The three statistics are NaN under two returns
    or with zero dispersion (``std ≤ ZERO_DISPERSION · max|r|``, as in cryptota_core.metrics)."""
    r = np.asarray(returns, dtype=np.float64).ravel()
    r = r[~np.isnan(r)]
    n = int(r.size)
    if n < 2:
        return math.nan, math.nan, math.nan, n
    std = float(np.std(r, ddof=1))
    if r.max() == r.min() or std <= ZERO_DISPERSION * float(np.abs(r).max()):
        return math.nan, math.nan, math.nan, n
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    skew = float(np.mean(centred**3)) / m2**1.5
    kurtosis = float(np.mean(centred**4)) / m2**2
    return float(r.mean()) / std, skew, kurtosis, n


def psr_from_returns(returns: npt.ArrayLike, benchmark: float = 0.0) -> float:
    """:func:`probabilistic_sharpe_ratio` of a series of per-period returns (NaN values dropped).

    SR is ``mean / std(ddof=1)`` of the returns, skewness and non-excess kurtosis are population
    moments (ddof=0), n the number of returns; ``benchmark`` is a per-period Sharpe ratio. NaN
    under two returns or with zero dispersion (a constant series); never raises on such data.
    """
    sharpe, skew, kurtosis, n = _return_moments(returns)
    if n < 2 or math.isnan(sharpe):
        return math.nan
    return probabilistic_sharpe_ratio(sharpe, n, skew, kurtosis, benchmark)


def minimum_track_record_length(
    sharpe: float,
    skew: float,
    kurtosis: float,
    benchmark: float = 0.0,
    confidence: float = SIGNIFICANCE,
) -> float:
    """Number of returns needed before a Sharpe ratio of ``sharpe`` beats ``benchmark`` with
    probability ``confidence`` (Bailey & López de Prado 2012, eq. 13):

    ``MinTRL = 1 + (1 − γ3·SR + (γ4 − 1)/4 · SR²) · (Φ⁻¹(confidence) / (SR − SR*))²``.

    Same conventions as :func:`probabilistic_sharpe_ratio` (per-period SR and SR*, non-excess
    kurtosis); at ``n_obs = MinTRL`` the PSR equals ``confidence``. The result is a number of
    returns (not rounded). ``math.inf`` when ``sharpe ≤ benchmark`` (no track record is long
    enough); NaN when an argument is NaN or infinite. Raises :class:`InvalidInputError` for a
    confidence outside (0, 1) or a kurtosis below ``1 + skew²``.
    """
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(
            f"confidence={confidence}: pass a probability between 0 and 1, e.g. 0.95"
        )
    if not all(math.isfinite(v) for v in (sharpe, skew, kurtosis, benchmark)):
        return math.nan
    _check_moments(skew, kurtosis)
    if sharpe <= benchmark:
        return math.inf
    z = _NORMAL.inv_cdf(confidence)
    variance_term = _sharpe_variance_term(sharpe, skew, kurtosis)
    return 1.0 + variance_term * (z / (sharpe - benchmark)) ** 2


def haircut_sharpe_ratio(
    sharpe: float, n_obs: int, skew: float, kurtosis: float, n_trials: int
) -> float:
    """The Sharpe ratio left after correcting its significance for ``n_trials`` tests
    (Harvey & Liu 2015, "Backtesting", Journal of Portfolio Management 42(1), Bonferroni form):
    the one-sided p-value of SR > 0, ``p = 1 − PSR(0)``, becomes ``p* = min(1, N·p)``, and the
    haircut Sharpe ratio is ``SR · Φ⁻¹(1 − p*) / Φ⁻¹(1 − p)`` — the Sharpe ratio whose
    single-test significance equals the multiple-test significance of ``sharpe``.

    Per-period like ``sharpe``; 0 when nothing survives (``p* ≥ 1/2``, and for ``sharpe ≤ 0``);
    NaN for NaN input. Unlike the DSR it does not depend on the spread of the trials' Sharpe
    ratios, so a search whose spread comes from costs still gets a usable number. Bonferroni
    with N counted as independent is conservative for correlated trials (Harvey & Liu). Raises
    :class:`InvalidInputError` for ``n_obs < 2`` or ``n_trials < 1``.
    """
    if n_trials < 1:
        raise InvalidInputError(
            f"n_trials={n_trials}: pass the number of parameter sets tried, at least 1"
        )
    psr = probabilistic_sharpe_ratio(sharpe, n_obs, skew, kurtosis)
    if math.isnan(psr):
        return math.nan
    if sharpe <= 0.0 or psr <= 0.5:
        return 0.0
    p = 1.0 - psr
    if p <= 0.0:  # Φ rounded to 1: beyond any correction that N can make
        return sharpe
    adjusted = min(1.0, n_trials * p)
    if adjusted >= 0.5:
        return 0.0
    return sharpe * _NORMAL.inv_cdf(1.0 - adjusted) / _NORMAL.inv_cdf(1.0 - p)


def null_sharpe_variance(n_obs: int) -> float:
    """``1 / (n − 1)``: the variance of a per-period Sharpe estimate over ``n_obs`` returns when
    the true Sharpe ratio is 0 (Bailey & López de Prado 2012's ``(1 − γ3·SR + (γ4 − 1)/4·SR²) /
    (n − 1)`` at SR = 0, whatever the skew and tails). The spread of N skill-less trials' Sharpe
    ratios is this sampling noise alone — the premise of Bailey, Borwein, López de Prado & Zhu
    (2014), "Pseudo-Mathematics and Financial Charlatanism", Notices of the AMS 61(5), whose
    minimum backtest length takes exactly this variance. NaN under two returns."""
    if n_obs < 2:
        return math.nan
    return 1.0 / (n_obs - 1)


@dataclass(frozen=True)
class EffectiveObservations:
    """How many independent returns a series is worth."""

    n_obs: int
    """The returns (NaN dropped): what PSR and DSR take as n."""
    autocorrelation: float
    """ρ1, the lag-1 autocorrelation of the returns; NaN under three returns or without
    dispersion."""
    adjusted: float
    """``n · (1 − ρ1) / (1 + ρ1)``: the effective sample size of the mean of an AR(1) series
    (ρ1 clipped to ±0.99); a positive ρ1 makes the series worth fewer returns. NaN with ρ1."""


def effective_observations(returns: npt.ArrayLike) -> EffectiveObservations:
    """The number of returns and their autocorrelation-adjusted count (AR(1) approximation),
    for a reader to judge whether n is as independent as PSR assumes."""
    r = np.asarray(returns, dtype=np.float64).ravel()
    r = r[~np.isnan(r)]
    n = int(r.size)
    rho = math.nan
    if n >= 3:
        centred = r - r.mean()
        denominator = float(centred @ centred)
        if denominator > ZERO_DISPERSION * ZERO_DISPERSION * n * float(np.abs(r).max()) ** 2:
            rho = float(centred[1:] @ centred[:-1]) / denominator
    if math.isnan(rho):
        return EffectiveObservations(n_obs=n, autocorrelation=math.nan, adjusted=math.nan)
    clipped = min(0.99, max(-0.99, rho))
    return EffectiveObservations(
        n_obs=n, autocorrelation=rho, adjusted=n * (1.0 - clipped) / (1.0 + clipped)
    )


# --------------------------------------------------------------------------------------------
# Deflated Sharpe ratio (Bailey & López de Prado 2014)
# --------------------------------------------------------------------------------------------


def _trial_array(trial_sharpes: npt.ArrayLike) -> FloatArray:
    trials = np.asarray(trial_sharpes, dtype=np.float64).ravel()
    if np.isinf(trials).any():
        raise InvalidInputError(
            "trial_sharpes has infinite values: pass NaN for a trial whose Sharpe ratio is "
            "undefined (no trades, flat equity)"
        )
    return trials


def sharpe_variance(trial_sharpes: npt.ArrayLike) -> float:
    """V[{SR_n}], the variance of the trials' per-period Sharpe ratios (sample variance,
    ddof=1) — the spread that sets how high the best of N lucky trials reaches.

    NaN entries (trials whose Sharpe ratio is undefined) are left out. Exactly 0 when the defined
    values are all equal; NaN with fewer than two. Raises :class:`InvalidInputError` for
    infinite values.
    """
    trials = _trial_array(trial_sharpes)
    defined = trials[~np.isnan(trials)]
    if defined.size < 2:
        return math.nan
    if defined.max() == defined.min():
        return 0.0  # np.var of equal values can leave ~1e-34 of rounding
    return float(np.var(defined, ddof=1))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """SR0, the expected maximum Sharpe ratio of ``n_trials`` independent trials without skill
    (Bailey & López de Prado 2014, eq. 2; Bailey et al. 2014, "Pseudo-Mathematics and Financial
    Charlatanism", Proposition 1):

    ``SR0 = √V · ((1 − γ) · Φ⁻¹(1 − 1/N) + γ · Φ⁻¹(1 − 1/(N·e)))``,

    γ ≈ 0.5772 the Euler–Mascheroni constant, V the variance of the trials' Sharpe ratios, in
    the same (per-period) units as the result. An approximation of E[max] of N normals that is
    accurate for N ≫ 1.

    0 for one trial (no selection took place), whatever V is. NaN when V is NaN (N > 1). Raises
    :class:`InvalidInputError` for ``n_trials < 1`` or a negative V.
    """
    if n_trials < 1:
        raise InvalidInputError(
            f"n_trials={n_trials}: pass the number of parameter sets tried, at least 1"
        )
    if n_trials == 1:
        return 0.0
    if math.isnan(sharpe_variance):
        return math.nan
    if sharpe_variance < 0.0:
        raise InvalidInputError(
            f"sharpe_variance={sharpe_variance}: pass the variance of the trials' per-period "
            "Sharpe ratios, 0 or more"
        )
    gamma = float(np.euler_gamma)
    spread = (1.0 - gamma) * _NORMAL.inv_cdf(1.0 - 1.0 / n_trials) + gamma * _NORMAL.inv_cdf(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return math.sqrt(sharpe_variance) * spread


@dataclass(frozen=True)
class DeflatedSharpe:
    """The deflated Sharpe ratio of a search's winner and what went into it. Sharpe ratios are
    per period (not annualised); NaN where undefined."""

    sharpe: float
    """The winner's per-period Sharpe ratio (ddof=1)."""
    dsr: float
    """PSR of the winner against ``expected_max_sharpe``: the probability that its true Sharpe
    ratio beats the best that luck alone gives."""
    expected_max_sharpe: float
    """SR0, the expected maximum per-period Sharpe ratio of ``n_trials`` skill-less trials."""
    n_trials: int
    """N: the defined trial Sharpe ratios, or the caller's ``n_trials``."""
    sharpe_variance: float
    """V: the variance (ddof=1) of the defined trial Sharpe ratios, or the caller's
    ``variance``."""
    significant: bool
    """``dsr > SIGNIFICANCE`` (0.95); False when ``dsr`` is NaN."""
    n_obs: int
    """The winner's number of returns."""
    skew: float
    """The winner's skewness (population moment)."""
    kurtosis: float
    """The winner's non-excess kurtosis (population moment, 3 for a normal)."""


def deflated_sharpe_ratio(
    returns_of_winner: npt.ArrayLike,
    trial_sharpes: npt.ArrayLike,
    *,
    n_trials: int | None = None,
    variance: float | None = None,
) -> DeflatedSharpe:
    """Deflated Sharpe ratio of the winner of a search (Bailey & López de Prado 2014, eq. 1):
    the PSR of its returns against ``SR0 = expected_max_sharpe(N, V)``, the Sharpe ratio the
    best of N skill-less trials reaches by luck.

    Args:
        returns_of_winner: the selected trial's per-period returns (NaN values dropped); its SR,
            skewness, non-excess kurtosis and length enter the PSR.
        trial_sharpes: the per-period (not annualised) Sharpe ratios of **every** trial of the
            search, the winner's included, in the same units as the winner's. NaN marks a trial
            whose Sharpe ratio is undefined (no trades, flat equity): it is left out of both V
            and N, because a trial that produced no Sharpe ratio was never a candidate to win.
        n_trials: N, to override the count of defined trial Sharpe ratios — e.g. the number of
            *independent* trials when the grid's trials are correlated (the paper estimates it
            by clustering), or a count that includes earlier searches. V is still taken from
            ``trial_sharpes``.
        variance: V, to override the cross-sectional variance of ``trial_sharpes`` — e.g.
            :func:`null_sharpe_variance` of the winner's length, the sampling variance of a
            skill-less trial's Sharpe estimate, when the trials' spread is not luck (costs
            that differ between sets widen it without making any of them lucky).

    Degenerate but legitimate inputs never raise: one trial gives SR0 = 0 and DSR = PSR(0);
    trials that all have the same Sharpe ratio (V = 0) give SR0 = 0 too; fewer than two defined
    trial Sharpe ratios with N > 1, no defined one at all, fewer than two winner returns or a
    winner without dispersion give NaN (and ``significant`` False). Raises
    :class:`InvalidInputError` for an empty ``trial_sharpes``, infinite trial Sharpe ratios, or
    ``n_trials < 1``.
    """
    trials = _trial_array(trial_sharpes)
    if trials.size == 0:
        raise InvalidInputError(
            "trial_sharpes is empty: pass the per-period Sharpe ratio of every trial of the "
            "search, the winner's included"
        )
    if n_trials is not None and n_trials < 1:
        raise InvalidInputError(
            f"n_trials={n_trials}: pass the number of (independent) trials, at least 1, or "
            "None to count the defined trial Sharpe ratios"
        )
    if variance is not None and not variance >= 0.0:
        raise InvalidInputError(
            f"variance={variance}: pass the variance of a trial's per-period Sharpe ratio, 0 "
            "or more, or None for the variance across trial_sharpes"
        )
    variance = sharpe_variance(trials) if variance is None else float(variance)
    n = int(np.count_nonzero(~np.isnan(trials))) if n_trials is None else int(n_trials)
    benchmark = expected_max_sharpe(n, variance) if n >= 1 else math.nan
    sharpe, skew, kurtosis, n_obs = _return_moments(returns_of_winner)
    dsr = math.nan
    if n_obs >= 2 and not math.isnan(sharpe):
        dsr = probabilistic_sharpe_ratio(sharpe, n_obs, skew, kurtosis, benchmark)
    return DeflatedSharpe(
        sharpe=sharpe,
        dsr=dsr,
        expected_max_sharpe=benchmark,
        n_trials=n,
        sharpe_variance=variance,
        significant=bool(dsr > SIGNIFICANCE),
        n_obs=n_obs,
        skew=skew,
        kurtosis=kurtosis,
    )


# --------------------------------------------------------------------------------------------
# Probability of backtest overfitting by CSCV (Bailey, Borwein, López de Prado & Zhu 2015)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PboResult:
    """The outcome of combinatorially symmetric cross-validation over a search's trials.

    The per-combination arrays follow ``itertools.combinations(range(n_blocks), n_blocks // 2)``
    order: combination c takes those blocks in sample and the others out of sample. Sharpe
    ratios are per period (not annualised).
    """

    pbo: float
    """Share of combinations whose in-sample best set ranks at or below the median out of
    sample (logit ≤ 0): the probability of backtest overfitting."""
    logits: FloatArray
    """λ_c = ln(ω_c / (1 − ω_c)), ω_c = the chosen set's out-of-sample rank / (N + 1)."""
    n_combinations: int
    """C(S, S/2)."""
    n_blocks: int
    """S."""
    n_strategies: int
    """N, the sets compared."""
    degradation_slope: float
    """Slope of the OLS line of out-of-sample on in-sample Sharpe ratio of the chosen sets; a
    negative slope means a better in-sample Sharpe ratio promises a worse one out of sample.
    NaN with fewer than two defined pairs or no spread in sample."""
    degradation_intercept: float
    """Intercept of that line."""
    probability_of_loss: float
    """Share of combinations whose chosen set loses out of sample (mean return < 0, the sign of
    its out-of-sample Sharpe ratio)."""
    is_sharpe: FloatArray
    """The chosen set's in-sample Sharpe ratio per combination (NaN where undefined)."""
    oos_sharpe: FloatArray
    """Its out-of-sample Sharpe ratio per combination (NaN where undefined)."""
    chosen: IntArray
    """The chosen set's index (row of the block arrays, column of the returns) per combination."""
    flat_half: FlatHalf = "worst"
    """How a set without a Sharpe ratio over a half was ranked (:data:`FlatHalf`)."""


def _check_blocks_and_sets(n_blocks: int, n_strategies: int) -> None:
    if n_strategies < 2:
        raise InvalidInputError(
            f"n_strategies={n_strategies}: PBO compares parameter sets; pass the returns of at "
            "least 2"
        )
    if n_blocks < 2 or n_blocks % 2:
        raise InvalidInputError(
            f"n_blocks={n_blocks}: CSCV splits the blocks into two equal halves; use an even "
            f"number of at least 2, e.g. {DEFAULT_BLOCKS}"
        )
    if n_blocks > MAX_BLOCKS:
        raise InvalidInputError(
            f"n_blocks={n_blocks} gives {math.comb(n_blocks, n_blocks // 2):,} combinations; use "
            f"at most {MAX_BLOCKS} blocks ({DEFAULT_BLOCKS} is the paper's choice)"
        )


def _as_block_array(name: str, values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise InvalidInputError(
            f"{name} has NaN or infinite values: per-block sums must be finite; a block "
            "without bars has sum 0 and count 0"
        )
    return array


def _ols(x: FloatArray, y: FloatArray) -> tuple[float, float]:
    """Slope and intercept of y on x over the pairs where both are finite."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 2:
        return math.nan, math.nan
    dx = x - x.mean()
    # Sums of products, not ``@``: BLAS wakes its own threads for a dot product, which right
    # after a parallel numba kernel waited ~15 ms for the cores.
    sxx = float(np.sum(dx * dx))
    if sxx == 0.0:
        return math.nan, math.nan
    slope = float(np.sum(dx * (y - y.mean()))) / sxx
    return slope, float(y.mean()) - slope * float(x.mean())


def _check_flat_half(flat_half: str) -> None:
    if flat_half not in FLAT_HALF_CONVENTIONS:
        raise InvalidInputError(
            f"flat_half={flat_half!r}: use 'worst' (a half without a Sharpe ratio ranks last) "
            "or 'zero' (it ranks as its zero return)"
        )


def pbo_from_blocks(
    block_sum: npt.ArrayLike,
    block_sumsq: npt.ArrayLike,
    block_count: npt.ArrayLike,
    *,
    flat_half: FlatHalf = "worst",
    max_chunk_elements: int = MAX_CHUNK_ELEMENTS,
) -> PboResult:
    """Probability of backtest overfitting by CSCV (Bailey, Borwein, López de Prado & Zhu 2015,
    §2), from per-block sufficient statistics instead of a bars × sets returns matrix.

    Args:
        block_sum: shape (N sets, S blocks): per set and per contiguous block of bars, the sum
            of the per-bar returns.
        block_sumsq: the same shape: the sum of the squared per-bar returns.
        block_count: the same shape, or (S,) when every set has the same bars: the number of
            returns in each block.
        flat_half: how a set whose Sharpe ratio is undefined over a half is ranked there
            (:data:`FlatHalf`): ``worst`` (below every defined set) or ``zero`` (as a Sharpe
            ratio of 0, what not trading earns).
        max_chunk_elements: sets × combinations per call of the CSCV kernel
            (:func:`~cryptota_core.kernels.cscv.cscv_nb`, whose memory is a few values per set
            and thread whatever the chunk); the result does not depend on it.

    For each of the C(S, S/2) ways to pick half of the blocks as in-sample (IS) — the rest out
    of sample (OOS) — the set with the best IS Sharpe ratio is chosen; its OOS Sharpe ratio's
    rank among all N sets' OOS Sharpe ratios (ascending, 1 = worst, ties take the average rank)
    gives ω = rank / (N + 1) and the logit λ = ln(ω / (1 − ω)). PBO is the share of λ ≤ 0: how
    often the IS winner is no better than the OOS median. The mean and sample std (ddof=1) of any
    union of blocks follow exactly from the sums, so this is the textbook CSCV with the
    performance statistic ``mean / std(ddof=1)`` per bar.

    Choices the paper leaves open: a set whose Sharpe ratio is undefined over a union of blocks
    (fewer than two returns, or zero dispersion, e.g. it never traded) ranks below every defined
    one with ``flat_half="worst"`` — IS it is never chosen while any set is defined, OOS it
    shares the bottom ranks — and as a Sharpe ratio of 0 with ``flat_half="zero"`` (then a flat
    half beats every losing set, and a set flat in sample can be chosen when all others lose).
    Sharpe ratios within :data:`PBO_RELATIVE_TOLERANCE` (relative) plus
    :data:`PBO_ABSOLUTE_TOLERANCE` of each other tie: the IS best among near-ties is the lowest
    set index, and OOS ties share their average rank, so rounding in the order of summation
    never changes the result. Blocks may differ in size (the last block of a sweep is usually
    shorter); each combination then just has unequal halves.

    Raises :class:`InvalidInputError` for arrays of other shapes, fewer than 2 sets, an odd S or
    S > :data:`MAX_BLOCKS`, NaN or infinite sums, negative or fractional counts, negative sums
    of squares, or an unknown ``flat_half``.
    """
    _check_flat_half(flat_half)
    arrays = _checked_blocks(block_sum, block_sumsq, block_count)
    return _cscv(*arrays, (flat_half,), max_chunk_elements)[flat_half]


def pbo_by_convention(
    block_sum: npt.ArrayLike,
    block_sumsq: npt.ArrayLike,
    block_count: npt.ArrayLike,
    *,
    max_chunk_elements: int = MAX_CHUNK_ELEMENTS,
) -> dict[FlatHalf, PboResult]:
    """:func:`pbo_from_blocks` under both flat-half conventions (``worst`` and ``zero``), in one
    pass over the combinations: the halves' sums and Sharpe ratios, most of the cost, are
    shared. Same arguments and errors as :func:`pbo_from_blocks`."""
    arrays = _checked_blocks(block_sum, block_sumsq, block_count)
    return _cscv(*arrays, FLAT_HALF_CONVENTIONS, max_chunk_elements)


def _checked_blocks(
    block_sum: npt.ArrayLike, block_sumsq: npt.ArrayLike, block_count: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The three block arrays as float64, after every check :func:`pbo_from_blocks` names."""
    sums = _as_block_array("block_sum", block_sum)
    sumsqs = _as_block_array("block_sumsq", block_sumsq)
    counts = _as_block_array("block_count", block_count)
    if sums.ndim != 2 or sumsqs.shape != sums.shape:
        raise InvalidInputError(
            f"block_sum shape {sums.shape}, block_sumsq shape {sumsqs.shape}: pass two arrays "
            "of the same shape (sets, blocks)"
        )
    n_sets, n_blocks = sums.shape
    if counts.shape not in (sums.shape, (n_blocks,)):
        raise InvalidInputError(
            f"block_count shape {counts.shape}: pass ({n_sets}, {n_blocks}) like block_sum, "
            f"or ({n_blocks},) when every set has the same bars"
        )
    _check_blocks_and_sets(n_blocks, n_sets)
    if (counts < 0).any() or (counts != np.round(counts)).any():
        raise InvalidInputError(
            "block_count has negative or fractional values: pass the number of returns in "
            "each block"
        )
    if (sumsqs < 0).any():
        raise InvalidInputError(
            "block_sumsq has negative values: pass the sum of the squared returns of each block"
        )

    return sums, sumsqs, counts


def _cscv(
    sums: FloatArray,
    sumsqs: FloatArray,
    counts: FloatArray,
    conventions: tuple[FlatHalf, ...],
    max_chunk_elements: int,
) -> dict[FlatHalf, PboResult]:
    """CSCV over checked block arrays, one :class:`PboResult` per flat-half convention."""
    n_sets, n_blocks = sums.shape
    # CSCV is symmetric: the out-of-sample half of a combination is the in-sample half of its
    # complement. Each pair is evaluated once, from the combination that holds block 0.
    combos = list(combinations(range(n_blocks), n_blocks // 2))
    position = {combo: i for i, combo in enumerate(combos)}
    everything = frozenset(range(n_blocks))
    first = [i for i, combo in enumerate(combos) if combo[0] == 0]
    second = [position[tuple(sorted(everything.difference(combos[i])))] for i in first]
    halves = np.zeros((len(first), n_blocks), dtype=np.bool_)
    for row, i in enumerate(first):
        halves[row, list(combos[i])] = True

    n_combos = len(combos)
    sums, sumsqs = np.ascontiguousarray(sums), np.ascontiguousarray(sumsqs)
    counts = np.ascontiguousarray(np.broadcast_to(counts, sums.shape))
    logits = {c: np.empty(n_combos) for c in conventions}
    chosen = {c: np.empty(n_combos, dtype=np.int64) for c in conventions}
    is_sharpe = {c: np.empty(n_combos) for c in conventions}
    oos_sharpe = {c: np.empty(n_combos) for c in conventions}
    loss = {c: np.empty(n_combos, dtype=bool) for c in conventions}
    step = max(1, int(max_chunk_elements) // n_sets)
    for start in range(0, len(first), step):
        stop = min(start + step, len(first))
        index = np.array([first[start:stop], second[start:stop]])
        best, ins, oos, omega, lost = cscv_nb(
            sums,
            sumsqs,
            counts,
            halves[start:stop],
            np.array([c == "zero" for c in conventions]),
            BLOCK_ZERO_DISPERSION,
            PBO_RELATIVE_TOLERANCE,
            PBO_ABSOLUTE_TOLERANCE,
        )
        for n, convention in enumerate(conventions):
            logits[convention][index] = np.log(omega[n] / (1.0 - omega[n]))
            chosen[convention][index] = best[n]
            is_sharpe[convention][index] = ins[n]
            oos_sharpe[convention][index] = oos[n]
            loss[convention][index] = lost[n]

    results: dict[FlatHalf, PboResult] = {}
    for convention in conventions:
        ins_c, oos_c = is_sharpe[convention], oos_sharpe[convention]
        ins_c[np.isinf(ins_c)] = np.nan
        oos_c[np.isinf(oos_c)] = np.nan
        slope, intercept = _ols(ins_c, oos_c)
        results[convention] = PboResult(
            pbo=float(np.mean(logits[convention] <= 0.0)),
            logits=logits[convention],
            n_combinations=n_combos,
            n_blocks=n_blocks,
            n_strategies=n_sets,
            degradation_slope=slope,
            degradation_intercept=intercept,
            probability_of_loss=float(np.mean(loss[convention])),
            is_sharpe=ins_c,
            oos_sharpe=oos_c,
            chosen=chosen[convention],
            flat_half=convention,
        )
    return results


def block_boundaries(n_rows: int, n_blocks: int) -> IntArray:
    """Row boundaries of ``n_blocks`` contiguous blocks over ``n_rows`` rows, as even as
    possible (sizes differ by at most one, as ``numpy.array_split``): block b is rows
    ``[bounds[b], bounds[b + 1])``. The blocks :func:`pbo_from_returns` uses."""
    return (np.arange(n_blocks + 1, dtype=np.int64) * n_rows) // n_blocks


def pbo_from_returns(
    returns: npt.ArrayLike,
    n_blocks: int = DEFAULT_BLOCKS,
    *,
    flat_half: FlatHalf = "worst",
    max_chunk_elements: int = MAX_CHUNK_ELEMENTS,
) -> PboResult:
    """Probability of backtest overfitting by CSCV from a T × N matrix of per-bar returns (rows
    are bars in time order, columns are the parameter sets), the textbook form of Bailey,
    Borwein, López de Prado & Zhu (2015).

    The rows are split into ``n_blocks`` contiguous blocks of (nearly) equal size
    (:func:`block_boundaries`); each block's per-set sum, sum of squares and count of returns go
    to :func:`pbo_from_blocks`, which does the rest — one implementation for both forms. NaN
    returns are missing bars (left out of the sums and the counts). ``flat_half``: as in
    :func:`pbo_from_blocks`.

    Raises :class:`InvalidInputError` for a matrix that is not 2-D, has infinite values, fewer
    than 2 columns, or fewer rows than blocks, and for an odd ``n_blocks``.
    """
    return pbo_from_blocks(
        *blocks_from_returns(returns, n_blocks),
        flat_half=flat_half,
        max_chunk_elements=max_chunk_elements,
    )


def blocks_from_returns(
    returns: npt.ArrayLike, n_blocks: int = DEFAULT_BLOCKS
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The per-set, per-block sum, sum of squares and count (each ``(N sets, S blocks)``) of a
    T × N returns matrix cut into :func:`block_boundaries` blocks: the input of
    :func:`pbo_from_blocks` and :func:`pbo_by_convention`. NaN returns are missing (left out
    of sums and counts). Raises as :func:`pbo_from_returns`."""
    matrix = np.asarray(returns, dtype=np.float64)
    if matrix.ndim != 2:
        raise InvalidInputError(
            f"returns has shape {matrix.shape}: pass a 2-D matrix, bars × parameter sets"
        )
    n_rows, n_sets = matrix.shape
    _check_blocks_and_sets(n_blocks, n_sets)
    if n_blocks > n_rows:
        raise InvalidInputError(
            f"n_blocks={n_blocks} > {n_rows} bars: every block needs at least one bar; use "
            "fewer blocks or more bars"
        )
    if np.isinf(matrix).any():
        raise InvalidInputError(
            "returns has infinite values: pass simple per-bar returns, NaN for a missing bar"
        )
    present = ~np.isnan(matrix)
    filled = np.where(present, matrix, 0.0)
    starts = block_boundaries(n_rows, n_blocks)[:-1]
    return (
        np.ascontiguousarray(np.add.reduceat(filled, starts, axis=0).T),
        np.ascontiguousarray(np.add.reduceat(filled * filled, starts, axis=0).T),
        np.ascontiguousarray(np.add.reduceat(present.astype(np.float64), starts, axis=0).T),
    )
