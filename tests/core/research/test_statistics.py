"""Tests of cryptota_core.research.statistics: PSR, MinTRL and DSR against the formulas and the
DSR paper's numerical example, and PBO by CSCV against an independent textbook implementation."""

from __future__ import annotations

import math
from itertools import combinations, pairwise

import numpy as np
import pytest
from scipy import stats

from cryptota_core.errors import InvalidInputError
from cryptota_core.research.statistics import (
    DeflatedSharpe,
    block_boundaries,
    blocks_from_returns,
    deflated_sharpe_ratio,
    effective_observations,
    expected_max_sharpe,
    haircut_sharpe_ratio,
    minimum_track_record_length,
    null_sharpe_variance,
    pbo_by_convention,
    pbo_from_blocks,
    pbo_from_returns,
    probabilistic_sharpe_ratio,
    psr_from_returns,
    sharpe_variance,
)

# --------------------------------------------------------------------------------------------
# Probabilistic Sharpe ratio and minimum track record length
# --------------------------------------------------------------------------------------------


def psr_reference(r: np.ndarray, benchmark: float) -> float:
    """Bailey & López de Prado (2012) with scipy's moments and normal CDF, written out apart."""
    sr = r.mean() / r.std(ddof=1)
    skew = stats.skew(r)
    kurt = stats.kurtosis(r, fisher=False)
    z = (sr - benchmark) * math.sqrt(r.size - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    return float(stats.norm.cdf(z))


def test_psr_from_returns_matches_the_formula_on_skewed_fat_tailed_returns() -> None:
    rng = np.random.default_rng(5)
    r = np.exp(rng.normal(0.0, 0.02, 800)) - 1.0 + rng.standard_t(3, 800) * 0.003
    for benchmark in (0.0, 0.02, -0.01):
        assert psr_from_returns(r, benchmark) == pytest.approx(psr_reference(r, benchmark), 1e-9)


def test_psr_is_one_half_when_the_sharpe_ratio_equals_the_benchmark() -> None:
    assert probabilistic_sharpe_ratio(0.1, 500, -1.0, 6.0, benchmark=0.1) == 0.5
    assert probabilistic_sharpe_ratio(0.0, 10, 0.0, 3.0) == 0.5


def test_psr_penalises_negative_skew_fat_tails_and_short_samples() -> None:
    normal = probabilistic_sharpe_ratio(0.05, 500, 0.0, 3.0)
    assert probabilistic_sharpe_ratio(0.05, 500, -2.0, 3.0 + 4.0 + 4.0) < normal
    assert probabilistic_sharpe_ratio(0.05, 500, 0.0, 12.0) < normal
    assert probabilistic_sharpe_ratio(0.05, 100, 0.0, 3.0) < normal
    # normal returns: Φ(SR·√(n−1)/√(1 + SR²/2))
    assert normal == pytest.approx(stats.norm.cdf(0.05 * math.sqrt(499) / math.sqrt(1.00125)))


def test_psr_is_nan_for_undefined_input_and_rejects_nonsense() -> None:
    assert math.isnan(psr_from_returns(np.array([0.01])))
    assert math.isnan(psr_from_returns(np.full(10, 0.01)))
    assert math.isnan(psr_from_returns(np.array([])))
    assert math.isnan(probabilistic_sharpe_ratio(math.nan, 100, 0.0, 3.0))
    with pytest.raises(InvalidInputError, match="n_obs=1"):
        probabilistic_sharpe_ratio(0.1, 1, 0.0, 3.0)
    # excess kurtosis 0 passed where the Pearson kurtosis (3 for a normal) belongs
    with pytest.raises(InvalidInputError, match="non-excess"):
        probabilistic_sharpe_ratio(0.1, 100, 0.0, 0.0)
    with pytest.raises(InvalidInputError, match="non-excess"):
        probabilistic_sharpe_ratio(0.1, 100, -3.0, 9.0)  # below 1 + skew² = 10


def test_psr_at_the_minimum_track_record_length_equals_the_confidence() -> None:
    sharpe, skew, kurt, benchmark = 0.08, -1.2, 7.0, 0.02
    for confidence in (0.9, 0.95, 0.99):
        min_trl = minimum_track_record_length(sharpe, skew, kurt, benchmark, confidence)
        variance = 1 - skew * sharpe + (kurt - 1) / 4 * sharpe**2
        z = (sharpe - benchmark) * math.sqrt(min_trl - 1) / math.sqrt(variance)
        assert stats.norm.cdf(z) == pytest.approx(confidence, rel=1e-12)
        # one more observation than MinTRL (rounded up) is enough
        n = math.ceil(min_trl) + 1
        assert probabilistic_sharpe_ratio(sharpe, n, skew, kurt, benchmark) > confidence
    assert minimum_track_record_length(0.05, 0.0, 3.0) == pytest.approx(
        1 + (1 + 0.05**2 / 2) * (stats.norm.ppf(0.95) / 0.05) ** 2
    )


def test_minimum_track_record_length_is_infinite_without_an_edge() -> None:
    assert minimum_track_record_length(0.01, 0.0, 3.0, benchmark=0.01) == math.inf
    assert minimum_track_record_length(-0.02, 0.0, 3.0) == math.inf
    assert math.isnan(minimum_track_record_length(math.nan, 0.0, 3.0))
    with pytest.raises(InvalidInputError, match=r"confidence=1\.5"):
        minimum_track_record_length(0.1, 0.0, 3.0, confidence=1.5)


# --------------------------------------------------------------------------------------------
# Expected maximum Sharpe ratio and deflated Sharpe ratio
# --------------------------------------------------------------------------------------------


def test_dsr_reproduces_the_numerical_example_of_the_dsr_paper() -> None:
    """Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", §"A numerical example": the
    best of N = 100 trials has an annualised SR of 2.5 over T = 1250 daily returns (5 years of
    250 days), skewness −3, kurtosis 10 (non-excess); the trials' annualised Sharpe ratios have
    variance 1/2. Per day: SR = 2.5/√250 ≈ 0.1581, V = 0.5/250; the paper finds
    E[max SR] ≈ 0.1132 per day and DSR ≈ 0.9004, not significant at 95 %. (Figures as the paper
    states them; the formulas are eqs. 1-2 of the paper.)"""
    sharpe, variance = 2.5 / math.sqrt(250), 0.5 / 250
    sr0 = expected_max_sharpe(100, variance)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert sr0 * math.sqrt(250) == pytest.approx(1.7894, abs=5e-4)  # annualised
    dsr = probabilistic_sharpe_ratio(sharpe, 1250, -3.0, 10.0, benchmark=sr0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    assert dsr < 0.95
    assert probabilistic_sharpe_ratio(sharpe, 1250, -3.0, 10.0) > 0.99  # undeflated


def test_expected_max_sharpe_approximates_the_mean_maximum_of_n_normals() -> None:
    """The formula is an approximation of E[max] of N i.i.d. normals (Bailey et al. 2014);
    check it against simulation within 2 %."""
    rng = np.random.default_rng(7)
    for n_trials in (100, 1000):
        simulated = rng.standard_normal((4000, n_trials)).max(axis=1).mean() * 0.05
        assert expected_max_sharpe(n_trials, 0.05**2) == pytest.approx(simulated, rel=0.02)


def test_expected_max_sharpe_of_degenerate_searches() -> None:
    assert expected_max_sharpe(1, 0.3) == 0.0
    assert expected_max_sharpe(1, math.nan) == 0.0
    assert expected_max_sharpe(50, 0.0) == 0.0
    assert math.isnan(expected_max_sharpe(50, math.nan))
    assert expected_max_sharpe(1000, 0.01) > expected_max_sharpe(100, 0.01) > 0.0
    with pytest.raises(InvalidInputError, match="n_trials=0"):
        expected_max_sharpe(0, 0.1)
    with pytest.raises(InvalidInputError, match="sharpe_variance=-1"):
        expected_max_sharpe(3, -1.0)


def test_sharpe_variance_is_the_sample_variance_of_defined_trials() -> None:
    trials = np.array([0.01, 0.03, np.nan, -0.02, 0.05])
    assert sharpe_variance(trials) == pytest.approx(np.var([0.01, 0.03, -0.02, 0.05], ddof=1))
    assert math.isnan(sharpe_variance([0.02, np.nan]))
    with pytest.raises(InvalidInputError, match="infinite"):
        sharpe_variance([0.1, np.inf])


def test_dsr_is_the_psr_against_the_expected_maximum_of_the_trials() -> None:
    rng = np.random.default_rng(8)
    winner = rng.normal(0.001, 0.01, 1500)
    trials = np.append(rng.normal(0.0, 0.03, 49), winner.mean() / winner.std(ddof=1))
    result = deflated_sharpe_ratio(winner, trials)
    sr0 = expected_max_sharpe(50, float(np.var(trials, ddof=1)))
    assert isinstance(result, DeflatedSharpe)
    assert result.n_trials == 50
    assert result.n_obs == 1500
    assert result.expected_max_sharpe == pytest.approx(sr0, rel=1e-12)
    assert result.sharpe == pytest.approx(winner.mean() / winner.std(ddof=1), rel=1e-12)
    assert result.skew == pytest.approx(stats.skew(winner), rel=1e-9)
    assert result.kurtosis == pytest.approx(stats.kurtosis(winner, fisher=False), rel=1e-9)
    assert result.dsr == pytest.approx(psr_reference(winner, sr0), rel=1e-9)
    assert result.dsr < psr_from_returns(winner)
    assert result.significant is (result.dsr > 0.95)


def test_dsr_with_one_trial_or_no_spread_is_the_psr_against_zero() -> None:
    winner = np.random.default_rng(9).normal(0.001, 0.01, 1000)
    psr = psr_from_returns(winner)
    one = deflated_sharpe_ratio(winner, [0.1])
    assert (one.dsr, one.expected_max_sharpe, one.n_trials) == (psr, 0.0, 1)
    assert math.isnan(one.sharpe_variance)
    flat = deflated_sharpe_ratio(winner, np.full(20, 0.1))
    assert (flat.dsr, flat.expected_max_sharpe, flat.sharpe_variance) == (psr, 0.0, 0.0)


def test_dsr_leaves_undefined_trials_out_of_n_and_v_unless_n_is_given() -> None:
    rng = np.random.default_rng(10)
    winner = rng.normal(0.002, 0.01, 1000)
    defined = rng.normal(0.0, 0.02, 30)
    with_nan = np.concatenate([defined, np.full(70, np.nan)])
    result = deflated_sharpe_ratio(winner, with_nan)
    assert result.n_trials == 30
    assert result.dsr == deflated_sharpe_ratio(winner, defined).dsr
    counted = deflated_sharpe_ratio(winner, with_nan, n_trials=100)
    assert counted.n_trials == 100
    assert counted.sharpe_variance == result.sharpe_variance
    assert counted.expected_max_sharpe > result.expected_max_sharpe
    assert counted.dsr < result.dsr


def test_dsr_is_nan_not_an_error_for_degenerate_searches() -> None:
    winner = np.random.default_rng(11).normal(0.001, 0.01, 500)
    for result in (
        deflated_sharpe_ratio(winner, [np.nan, np.nan]),  # no defined trial Sharpe ratio
        deflated_sharpe_ratio(winner, [0.05, np.nan], n_trials=10),  # N > 1 but V undefined
        deflated_sharpe_ratio([0.01], [0.05, 0.02]),  # one winner return
        deflated_sharpe_ratio(np.zeros(300), [0.05, 0.02]),  # a winner that never traded
    ):
        assert math.isnan(result.dsr)
        assert result.significant is False
    assert deflated_sharpe_ratio(winner, [np.nan]).n_trials == 0
    with pytest.raises(InvalidInputError, match="trial_sharpes is empty"):
        deflated_sharpe_ratio(winner, [])
    with pytest.raises(InvalidInputError, match="n_trials=0"):
        deflated_sharpe_ratio(winner, [0.1, 0.2], n_trials=0)


# --------------------------------------------------------------------------------------------
# Probability of backtest overfitting (CSCV)
# --------------------------------------------------------------------------------------------


def pbo_textbook(returns: np.ndarray, n_blocks: int) -> dict[str, np.ndarray | float]:
    """CSCV written out as in Bailey, Borwein, López de Prado & Zhu (2015), §2.2, one
    combination at a time, Sharpe ratios recomputed from the raw returns with numpy's nanmean
    and nanstd (ddof=1): an independent oracle for the block-sum implementation. Undefined
    Sharpe ratios (fewer than 2 returns, std 0) are −inf; ranks are scipy's average ranks."""
    bounds = block_boundaries(returns.shape[0], n_blocks)
    blocks = [returns[bounds[b] : bounds[b + 1]] for b in range(n_blocks)]

    def sharpe(rows: np.ndarray) -> np.ndarray:
        count = (~np.isnan(rows)).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.nanstd(rows, axis=0, ddof=1)
            value = np.nanmean(rows, axis=0) / std
        return np.where((count >= 2) & (std > 0), value, -np.inf)

    logits, chosen, is_best, oos_best, loss = [], [], [], [], []
    n_sets = returns.shape[1]
    for combo in combinations(range(n_blocks), n_blocks // 2):
        train = np.concatenate([blocks[b] for b in combo])
        test = np.concatenate([blocks[b] for b in range(n_blocks) if b not in combo])
        is_sr, oos_sr = sharpe(train), sharpe(test)
        best = int(np.argmax(is_sr))
        omega = stats.rankdata(oos_sr, method="average")[best] / (n_sets + 1)
        logits.append(math.log(omega / (1 - omega)))
        chosen.append(best)
        is_best.append(is_sr[best])
        oos_best.append(oos_sr[best])
        loss.append(np.nanmean(test[:, best]) < 0)
    logit_array = np.array(logits)
    return {
        "logits": logit_array,
        "pbo": float(np.mean(logit_array <= 0)),
        "chosen": np.array(chosen),
        "is_sharpe": np.array(is_best),
        "oos_sharpe": np.array(oos_best),
        "probability_of_loss": float(np.mean(loss)),
    }


def awkward_returns(n_rows: int, seed: int) -> np.ndarray:
    """Returns of 12 sets with the cases CSCV must settle: a duplicated set (ties in and out of
    sample), a set that never trades (zero dispersion), a set with a real edge, missing bars."""
    rng = np.random.default_rng(seed)
    r = rng.standard_t(4, (n_rows, 12)) * 0.01
    r[:, 3] = r[:, 7]  # twins: tie for the IS best goes to the lower index, OOS average rank
    r[:, 5] = 0.0  # never trades: undefined Sharpe ratio, ranks last
    r[:, 9] += 0.002
    r[rng.integers(0, n_rows, 15), 2] = np.nan
    return r


@pytest.mark.parametrize(("n_rows", "n_blocks"), [(240, 8), (203, 6), (97, 4)])
def test_pbo_from_returns_matches_the_textbook_cscv(n_rows: int, n_blocks: int) -> None:
    r = awkward_returns(n_rows, seed=n_rows)
    expected = pbo_textbook(r, n_blocks)
    result = pbo_from_returns(r, n_blocks)
    assert result.n_combinations == math.comb(n_blocks, n_blocks // 2) == len(result.logits)
    assert (result.n_blocks, result.n_strategies) == (n_blocks, 12)
    np.testing.assert_array_equal(result.chosen, expected["chosen"])
    np.testing.assert_allclose(result.logits, expected["logits"], rtol=1e-12)
    np.testing.assert_allclose(result.is_sharpe, expected["is_sharpe"], rtol=1e-9)
    np.testing.assert_allclose(result.oos_sharpe, expected["oos_sharpe"], rtol=1e-9)
    assert result.pbo == expected["pbo"]
    assert result.probability_of_loss == expected["probability_of_loss"]
    slope, intercept = np.polyfit(expected["is_sharpe"], expected["oos_sharpe"], 1)
    assert result.degradation_slope == pytest.approx(slope, rel=1e-9)
    assert result.degradation_intercept == pytest.approx(intercept, rel=1e-9, abs=1e-15)


def test_pbo_from_blocks_equals_pbo_from_returns_and_ignores_chunking() -> None:
    r = np.random.default_rng(12).normal(0.0, 0.01, (300, 25))
    bounds = block_boundaries(300, 10)
    sums = np.stack([r[a:b].sum(axis=0) for a, b in pairwise(bounds)], axis=1)
    sumsqs = np.stack([(r[a:b] ** 2).sum(axis=0) for a, b in pairwise(bounds)], axis=1)
    counts = np.diff(bounds).astype(float)
    from_returns = pbo_from_returns(r, 10)
    for result in (
        pbo_from_blocks(sums, sumsqs, counts),
        pbo_from_blocks(sums, sumsqs, np.tile(counts, (25, 1))),
        pbo_from_blocks(sums, sumsqs, counts, max_chunk_elements=1),  # one combination a chunk
        pbo_from_blocks(sums, sumsqs, counts, max_chunk_elements=1000),
    ):
        np.testing.assert_array_equal(result.chosen, from_returns.chosen)
        np.testing.assert_allclose(result.logits, from_returns.logits, rtol=1e-12)
        assert result.pbo == from_returns.pbo


def test_pbo_of_pure_noise_is_high_and_performance_degrades() -> None:
    """No set has skill: the IS winner is an ordinary set OOS, so λ ≤ 0 about half the time
    (the paper's PBO ≈ 0.5 for unskilled searches), and a better IS Sharpe ratio promises a
    worse OOS one (the halves share the whole sample's fixed Sharpe ratio)."""
    results = [
        pbo_from_returns(np.random.default_rng(seed).normal(0.0, 0.01, (1600, 100)))
        for seed in range(4)
    ]
    assert all(result.pbo > 0.3 for result in results)
    assert np.mean([result.pbo for result in results]) > 0.45
    assert np.mean([result.degradation_slope for result in results]) < 0.0
    assert results[0].n_combinations == 12_870


def test_pbo_of_a_set_with_a_persistent_edge_is_low() -> None:
    r = np.random.default_rng(13).normal(0.0, 0.01, (1600, 100))
    r[:, 42] += 0.0025  # a per-bar Sharpe ratio of 0.25 in every block
    result = pbo_from_returns(r)
    assert result.pbo < 0.1
    assert result.probability_of_loss < 0.1
    assert np.mean(result.chosen == 42) > 0.9


def test_pbo_never_chooses_a_set_without_dispersion_in_sample() -> None:
    r = np.random.default_rng(14).normal(-0.01, 0.01, (160, 6))  # every trading set loses
    r[:, 0] = 0.0  # never trades
    r[:, 1] = 0.001  # a constant return: zero dispersion up to rounding
    result = pbo_from_returns(r, 8)
    assert not np.isin(result.chosen, [0, 1]).any()
    assert np.isfinite(result.logits).all()


def test_pbo_rejects_degenerate_shapes_with_one_line() -> None:
    r = np.random.default_rng(15).normal(0.0, 0.01, (100, 5))
    cases = [
        (lambda: pbo_from_returns(r, 15), "n_blocks=15: .* even"),
        (lambda: pbo_from_returns(r, 0), "n_blocks=0"),
        (lambda: pbo_from_returns(r[:10], 12), r"n_blocks=12 > 10 bars"),
        (lambda: pbo_from_returns(r[:, :1], 4), "n_strategies=1"),
        (lambda: pbo_from_returns(r[:, 0], 4), "2-D matrix"),
        (lambda: pbo_from_returns(np.full((100, 30), 0.01), 30), "at most 20 blocks"),
        (lambda: pbo_from_returns(np.where(r > 0.02, np.inf, r), 4), "infinite"),
        (lambda: pbo_from_blocks(np.zeros((5, 4)), np.zeros((5, 3)), np.ones(4)), "same shape"),
        (lambda: pbo_from_blocks(np.zeros((5, 4)), np.zeros((5, 4)), np.ones(3)), "block_count"),
        (lambda: pbo_from_blocks(np.full((5, 4), np.nan), np.zeros((5, 4)), np.ones(4)), "NaN"),
        (lambda: pbo_from_blocks(np.zeros((5, 4)), np.zeros((5, 4)), -np.ones(4)), "negative"),
        (lambda: pbo_from_blocks(np.zeros((5, 4)), -np.ones((5, 4)), np.ones(4)), "negative"),
        (lambda: pbo_from_returns(r, 4, flat_half="best"), "flat_half='best'"),  # type: ignore[arg-type]
    ]
    for call, message in cases:
        with pytest.raises(InvalidInputError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


def test_pbo_does_not_swap_near_ties_by_summation_order() -> None:
    """Two sets whose returns differ by rounding (4e-16) are one set for CSCV: the result is the
    one of an exact copy, whichever of the two has the larger sums — without the tolerance the
    copy that rounds up would win every in-sample half it shares and move every rank by ½."""
    r = np.random.default_rng(21).normal(0.0, 0.01, (320, 8))
    exact = r.copy()
    exact[:, 1] = exact[:, 0]
    reference = pbo_from_returns(exact, 8)
    for shift in (4e-16, -4e-16):
        near = exact.copy()
        near[:, 1] = near[:, 0] + shift
        assert (near[:, 1] != near[:, 0]).any()
        result = pbo_from_returns(near, 8)
        np.testing.assert_array_equal(result.chosen, reference.chosen)
        np.testing.assert_array_equal(result.logits, reference.logits)
        assert result.pbo == reference.pbo
    assert 1 not in reference.chosen  # the lower index wins a tie


def test_pbo_flat_half_conventions_rank_a_set_that_does_not_trade() -> None:
    """Every trading set loses; set 0 never trades. Ranked as worst, the flat set is never the
    in-sample choice and the loser chosen instead is below it nowhere; ranked as its zero
    return, the flat set is the in-sample best of every combination and the best out of
    sample too (PBO 0): the two conventions bracket what a flat half means."""
    r = np.random.default_rng(22).normal(-0.004, 0.01, (320, 6))
    r[:, 0] = 0.0
    worst = pbo_from_returns(r, 8, flat_half="worst")
    zero = pbo_from_returns(r, 8, flat_half="zero")
    assert (worst.flat_half, zero.flat_half) == ("worst", "zero")
    assert 0 not in worst.chosen
    assert (zero.chosen == 0).all()
    assert zero.pbo == 0.0
    assert worst.pbo != zero.pbo
    both = pbo_by_convention(*blocks_from_returns(r, 8), max_chunk_elements=40)
    for one, result in ((worst, both["worst"]), (zero, both["zero"])):
        np.testing.assert_array_equal(one.logits, result.logits)
        np.testing.assert_array_equal(one.chosen, result.chosen)
        assert one.flat_half == result.flat_half


def test_null_sharpe_variance_is_the_spread_of_skill_less_sharpe_ratios() -> None:
    """1,000 skill-less trials of 250 returns each: their Sharpe ratios spread as 1 / (n − 1),
    which is what null_sharpe_variance says without looking at the trials."""
    r = np.random.default_rng(23).standard_t(5, (250, 1_000)) * 0.01
    sharpes = r.mean(axis=0) / r.std(axis=0, ddof=1)
    assert sharpe_variance(sharpes) == pytest.approx(null_sharpe_variance(250), rel=0.1)
    assert math.isnan(null_sharpe_variance(1))


def test_dsr_takes_a_given_variance_and_rejects_a_negative_one() -> None:
    r = np.random.default_rng(24).normal(0.003, 0.01, 500)
    trials = np.random.default_rng(25).normal(0.0, 0.5, 100)  # a spread that is not luck
    cross = deflated_sharpe_ratio(r, trials)
    null = deflated_sharpe_ratio(r, trials, variance=null_sharpe_variance(500))
    assert null.sharpe_variance == pytest.approx(1 / 499)
    assert null.expected_max_sharpe == pytest.approx(expected_max_sharpe(100, 1 / 499))
    assert cross.dsr < 0.01 < 0.95 < null.dsr
    with pytest.raises(InvalidInputError, match="variance=-1"):
        deflated_sharpe_ratio(r, trials, variance=-1.0)


def test_haircut_sharpe_is_the_bonferroni_equivalent_sharpe_ratio() -> None:
    """Harvey & Liu (2015): the haircut Sharpe ratio's single-test p-value is N times the
    original one's; one trial keeps the Sharpe ratio, and a marginal one is cut to zero."""
    sharpe, n, skew, kurt = 0.15, 400, -0.5, 6.0
    p = 1 - probabilistic_sharpe_ratio(sharpe, n, skew, kurt)
    for trials in (1, 10, 100):
        haircut = haircut_sharpe_ratio(sharpe, n, skew, kurt, trials)
        ratio = stats.norm.ppf(1 - trials * p) / stats.norm.ppf(1 - p)
        assert haircut == pytest.approx(sharpe * ratio, rel=1e-9)
    assert haircut_sharpe_ratio(sharpe, n, skew, kurt, 1) == pytest.approx(sharpe)
    assert haircut_sharpe_ratio(0.05, 100, 0.0, 3.0, 1_000) == 0.0
    assert haircut_sharpe_ratio(-0.1, 100, 0.0, 3.0, 1) == 0.0
    assert math.isnan(haircut_sharpe_ratio(math.nan, 100, 0.0, 3.0, 5))
    with pytest.raises(InvalidInputError, match="n_trials=0"):
        haircut_sharpe_ratio(0.1, 100, 0.0, 3.0, 0)


def test_effective_observations_shrink_with_positive_autocorrelation() -> None:
    rng = np.random.default_rng(26)
    white = effective_observations(rng.normal(0.0, 1.0, 5_000))
    assert white.n_obs == 5_000 and abs(white.autocorrelation) < 0.05
    x = np.zeros(5_000)
    shocks = rng.normal(0.0, 1.0, 5_000)
    for i in range(1, x.size):
        x[i] = 0.5 * x[i - 1] + shocks[i]
    ar = effective_observations(x)
    assert ar.autocorrelation == pytest.approx(0.5, abs=0.05)
    assert ar.adjusted == pytest.approx(5_000 * (1 - ar.autocorrelation) / (1 + ar.autocorrelation))
    assert math.isnan(effective_observations(np.zeros(10)).adjusted)
