"""Bootstrap intervals and McNemar's test against small cases worked out by hand."""

from __future__ import annotations

import doctest
import math

import pytest

from udfs.evaluation.stats import (
    McNemarResult,
    bootstrap_ci,
    mcnemar,
    mcnemar_counts,
    paired_bootstrap_diff_ci,
)

# --- McNemar --------------------------------------------------------------------------------


def test_mcnemar_exact_small_discordant_counts():
    # n = 9 discordant pairs: p = 2 * (C(9,0) + C(9,1)) / 2^9 = 2 * 10 / 512.
    r = mcnemar_counts(1, 8)
    assert r == McNemarResult(b=1, c=8, statistic=1.0, p_value=0.0390625, method="exact")


def test_mcnemar_exact_is_symmetric_and_capped_at_one():
    assert mcnemar_counts(8, 1).p_value == 0.0390625
    # b = c = 5: 2 * (1 + 10 + 45 + 120 + 210 + 252) / 1024 = 1.246..., capped at 1.
    assert mcnemar_counts(5, 5).p_value == 1.0
    # b = 0, c = 6: 2 * 1 / 64.
    assert mcnemar_counts(0, 6).p_value == 0.03125


def test_mcnemar_no_discordant_pairs_is_p_one():
    r = mcnemar_counts(0, 0)
    assert (r.statistic, r.p_value, r.method) == (0.0, 1.0, "exact")


def test_mcnemar_exact_up_to_25_discordant_then_chi_square():
    assert mcnemar_counts(10, 15).method == "exact"  # b + c = 25
    # b = 0, c = 25: 2 / 2^25.
    assert mcnemar_counts(0, 25).p_value == pytest.approx(2 / 2**25, rel=1e-12)
    assert mcnemar_counts(10, 16).method == "chi2_cc"  # b + c = 26


def test_mcnemar_chi_square_with_continuity_correction():
    # (|10 - 30| - 1)^2 / 40 = 361 / 40 = 9.025; chi-square(1 df) tail at 9.025 = 0.002663.
    r = mcnemar_counts(10, 30)
    assert r.method == "chi2_cc"
    assert r.statistic == pytest.approx(9.025, abs=1e-12)
    assert r.p_value == pytest.approx(0.002663, rel=1e-3)


def test_mcnemar_continuity_correction_never_goes_negative():
    # |14 - 13| - 1 = 0: no evidence at all, not (-1)^2.
    r = mcnemar_counts(14, 13)
    assert (r.statistic, r.p_value) == (0.0, 1.0)


def test_mcnemar_counts_discordant_pairs_from_outcomes():
    a = [True, True, False, False, True, False, True]
    b = [False, True, True, True, False, False, True]
    # A-only: items 0 and 4 -> b = 2; B-only: items 2 and 3 -> c = 2.
    r = mcnemar(a, b)
    assert (r.b, r.c) == (2, 2)
    # Exact: 2 * (C(4,0) + C(4,1) + C(4,2)) / 16 = 2 * 11 / 16 -> capped at 1.
    assert r.p_value == 1.0


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError, match="a has 2, b has 1"):
        mcnemar([True, False], [True])
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_counts(-1, 3)


# --- bootstrap ------------------------------------------------------------------------------


def test_bootstrap_constant_outcomes_have_a_zero_width_interval():
    ones = bootstrap_ci([1, 1, 1, 1, 1])
    assert (ones.estimate, ones.low, ones.high) == (1.0, 1.0, 1.0)
    zeros = bootstrap_ci([0, 0, 0])
    assert (zeros.estimate, zeros.low, zeros.high) == (0.0, 0.0, 0.0)


def test_bootstrap_two_items_span_the_whole_range():
    # Resampling [0, 1] gives 0, 0.5, 1 with probability 1/4, 1/2, 1/4: the 2.5th and 97.5th
    # percentiles are 0 and 1.
    ci = bootstrap_ci([0, 1], n_resamples=4000)
    assert (ci.estimate, ci.low, ci.high) == (0.5, 0.0, 1.0)
    assert ci.n_items == 2 and ci.n_resamples == 4000


def test_bootstrap_matches_the_normal_approximation_for_many_items():
    # p = 100/400 = 0.25; 1.96 * sqrt(0.25 * 0.75 / 400) = 0.04244.
    ci = bootstrap_ci([1] * 100 + [0] * 300, n_resamples=4000, seed=3)
    assert ci.estimate == 0.25
    assert ci.low == pytest.approx(0.25 - 0.04244, abs=0.006)
    assert ci.high == pytest.approx(0.25 + 0.04244, abs=0.006)


def test_bootstrap_is_deterministic_for_a_seed():
    data = [1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0]
    assert bootstrap_ci(data, seed=11) == bootstrap_ci(data, seed=11)
    lows = {bootstrap_ci(data, seed=s, n_resamples=200).low for s in range(6)}
    assert len(lows) > 1  # the seed is used


def test_bootstrap_ratio_of_sums_resamples_whole_items():
    # Hallucinations per mention: item 1 has 1 of 4 mentions, item 2 has 3 of 4.
    ci = bootstrap_ci([1, 3], [4, 4], n_resamples=4000)
    assert ci.estimate == 0.5  # (1 + 3) / (4 + 4), not the mean of 0.25 and 0.75 by accident
    # Resamples: {1,1} -> 0.25, {1,2} -> 0.5, {2,2} -> 0.75.
    assert (ci.low, ci.high) == (0.25, 0.75)
    unequal = bootstrap_ci([1, 3], [1, 9])
    assert unequal.estimate == pytest.approx(0.4)  # 4 / 10


def test_bootstrap_drops_resamples_without_a_denominator():
    # Item 2 has no mentions; resamples of only item 2 have no rate and are dropped.
    ci = bootstrap_ci([1, 0], [2, 0], n_resamples=1000)
    assert (ci.estimate, ci.low, ci.high) == (0.5, 0.5, 0.5)
    assert 600 < ci.n_resamples < 900  # about 3/4 of them keep item 1


def test_bootstrap_rejects_undefined_rates():
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="sum to 0"):
        bootstrap_ci([0, 0], [0, 0])
    with pytest.raises(ValueError, match="3 numerators but 2 denominators"):
        bootstrap_ci([1, 0, 1], [1, 1])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1, 0], confidence=1.5)


def test_bootstrap_confidence_widens_the_interval():
    data = [1] * 30 + [0] * 70
    narrow = bootstrap_ci(data, confidence=0.5, seed=1)
    wide = bootstrap_ci(data, confidence=0.99, seed=1)
    assert wide.low < narrow.low < 0.3 < narrow.high < wide.high


# --- paired bootstrap ------------------------------------------------------------------------


def test_paired_identical_versions_have_a_zero_difference_interval():
    a = [1, 0, 1, 0, 0, 1, 1, 0] * 5
    ci = paired_bootstrap_diff_ci(a, list(a))
    assert (ci.estimate, ci.low, ci.high) == (0.0, 0.0, 0.0)


def test_paired_difference_keeps_the_pairing():
    # B fixes item 0 only: every resample's difference is -(share of item-0 copies).
    a = [1, 0, 1, 0]
    b = [0, 0, 1, 0]
    ci = paired_bootstrap_diff_ci(a, b, n_resamples=4000)
    assert ci.estimate == -0.25
    # P(no copy of item 0 among 4 draws) = (3/4)^4 = 0.316 > 2.5%: the upper bound is 0.
    assert ci.high == 0.0
    # P(>= 3 copies) = 13/256 = 5.1% > 2.5% and P(4 copies) = 1/256 < 2.5%: lower bound -0.75.
    assert ci.low == -0.75


def test_paired_all_fixed_is_a_certain_difference():
    ci = paired_bootstrap_diff_ci([1] * 10, [0] * 10)
    assert (ci.estimate, ci.low, ci.high) == (-1.0, -1.0, -1.0)


def test_paired_ratio_rates_with_denominators():
    # A: (2 + 0) / (4 + 4) = 0.25; B: (1 + 1) / (2 + 2) = 0.5; difference 0.25.
    ci = paired_bootstrap_diff_ci([2, 0], [1, 1], [4, 4], [2, 2], n_resamples=500)
    assert ci.estimate == pytest.approx(0.25)
    assert ci.low <= 0.25 <= ci.high


def test_paired_rejects_unpaired_lengths():
    with pytest.raises(ValueError, match="A has 3, B has 2"):
        paired_bootstrap_diff_ci([1, 0, 1], [1, 0])


def test_pairing_is_tighter_than_independent_resampling():
    # Same items, B = A with two of 40 flags removed: paired CI is narrow around -0.05.
    a = [1, 0] * 20
    b = list(a)
    b[0] = b[2] = 0
    ci = paired_bootstrap_diff_ci(a, b, seed=5)
    assert ci.estimate == pytest.approx(-0.05)
    assert ci.high <= 0.0
    assert ci.high - ci.low < 0.15
    assert math.isclose(ci.confidence, 0.95)


def test_docstring_examples_run():
    import udfs.evaluation.stats

    result = doctest.testmod(udfs.evaluation.stats)
    assert result.attempted > 0 and result.failed == 0
