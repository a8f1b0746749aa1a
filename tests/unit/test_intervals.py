"""The interval methods against references independent of the code: scipy computed here,
and a published worked example (Fagerland, Lydersen and Laake 2017, "Statistical Analysis of
Contingency Tables", chapter 8: Cavo et al. 2012, complete response before and after
consolidation therapy, Newcombe's square-and-add interval -0.0621 (-0.1186 to -0.0046))."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats

from udfs.evaluation import intervals
from udfs.evaluation.distributions import beta_quantile, t_quantile
from udfs.evaluation.intervals import (
    clopper_pearson,
    mcnemar,
    mcnemar_counts,
    paired_ratio_difference,
    paired_share_difference,
    ratio_interval,
    share_interval,
    wilson,
)

CASES = [(0, 1), (1, 1), (0, 20), (3, 20), (20, 20), (1, 10), (7, 200), (100, 200), (2, 1000)]


# --- one share -------------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "n"), CASES)
def test_clopper_pearson_is_scipys_exact_interval(k, n):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    low, high = clopper_pearson(k, n)
    assert low == pytest.approx(ref.low, abs=1e-9) and high == pytest.approx(ref.high, abs=1e-9)


@pytest.mark.parametrize(("k", "n"), CASES)
def test_wilson_is_scipys_wilson_interval(k, n):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
    low, high = wilson(k, n, 0.9)
    assert low == pytest.approx(ref.low, abs=1e-12) and high == pytest.approx(ref.high, abs=1e-12)


def test_zero_of_twenty_is_never_a_certain_zero():
    ci = share_interval(0, 20)
    assert (ci.estimate, ci.low) == (0.0, 0.0)
    # scipy: 1 - 0.025 ** (1 / 20) = 0.1684.
    assert ci.high == pytest.approx(1 - 0.025 ** (1 / 20), abs=1e-9)
    assert (ci.events, ci.total, ci.n_items, ci.method) == (0.0, 20.0, 20, "clopper_pearson")
    assert share_interval(20, 20).low == pytest.approx(0.025 ** (1 / 20), abs=1e-9)


@pytest.mark.parametrize(("q", "a", "b"), [(0.025, 3, 18), (0.975, 0.5, 40.5), (0.5, 120, 2),
                                           (0.001, 1e-3 + 1, 1500)])
def test_beta_quantile_matches_scipy(q, a, b):
    assert beta_quantile(q, a, b) == pytest.approx(stats.beta.ppf(q, a, b), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("q", "df"), [(0.975, 1), (0.975, 9), (0.995, 3.5), (0.6, 200)])
def test_t_quantile_matches_scipy(q, df):
    assert t_quantile(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-9)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="0 <= events <= n"):
        clopper_pearson(3, 2)
    with pytest.raises(ValueError, match="confidence must be in"):
        share_interval(1, 2, confidence=1.5)
    with pytest.raises(ValueError, match="3 numerators but 2 denominators"):
        ratio_interval([0, 1, 0], [1, 1])
    with pytest.raises(ValueError, match="numerator <= denominator"):
        ratio_interval([3], [2])
    with pytest.raises(ValueError, match="sum to 0"):
        ratio_interval([0, 0], [0, 0])


# --- a ratio of sums over images ----------------------------------------------------------
def _reference_ratio(x, m, confidence=0.95):
    """The documented recipe, written out with numpy and scipy: ratio, cluster-robust
    (linearised) variance, design effect, Korn-Graubard degrees-of-freedom shrink, exact
    beta bounds at the effective sample size."""
    x, m = np.asarray(x, float), np.asarray(m, float)
    keep = m > 0
    x, m = x[keep], m[keep]
    n, total = x.size, m.sum()
    r = x.sum() / total
    var = n / (n - 1) * np.sum(((x - r * m) / total) ** 2)
    n_eff = min(total, max(1.0, r * (1 - r) / var))
    alpha = 1 - confidence
    n_eff *= (stats.norm.ppf(1 - alpha / 2) / stats.t.ppf(1 - alpha / 2, n - 1)) ** 2
    n_eff = max(1.0, n_eff)
    return (stats.beta.ppf(alpha / 2, r * n_eff, n_eff - r * n_eff + 1),
            stats.beta.ppf(1 - alpha / 2, r * n_eff + 1, n_eff - r * n_eff))


def test_ratio_interval_follows_its_documented_recipe():
    x, m = [0, 2, 1, 0, 3, 0, 1, 0], [3, 4, 2, 5, 3, 1, 2, 4]
    ci = ratio_interval(x, m)
    assert ci.estimate == pytest.approx(7 / 24)
    assert (ci.low, ci.high) == pytest.approx(_reference_ratio(x, m), abs=1e-9)
    assert (ci.events, ci.total, ci.n_items, ci.method) == (7.0, 24.0, 8, "cluster_ratio")


def test_mentions_that_move_together_count_as_fewer_units():
    # Six images of 5 mentions: all invented or all true in each image. The same 10 of 30
    # mentions spread evenly over images are far more informative.
    together = ratio_interval([5, 5, 0, 0, 0, 0], [5] * 6)
    spread = ratio_interval([2, 2, 2, 2, 1, 1], [5] * 6)
    assert together.estimate == spread.estimate == pytest.approx(1 / 3)
    assert together.high - together.low > 1.5 * (spread.high - spread.low)


def test_a_ratio_with_no_event_takes_images_as_the_units():
    # 0 of 60 mentions in 20 images: as wide as 0 of 20 images (valid whatever the
    # correlation of an image's mentions), not 0 of 60 mentions.
    ci = ratio_interval([0] * 20, [2, 3, 4] * 6 + [2, 4])
    assert ci.high == pytest.approx(stats.binomtest(0, 20).proportion_ci(method="exact").high)
    assert ci.low == 0.0 and ci.total == 60.0


# --- paired differences --------------------------------------------------------------------
def _table(both, a_only, b_only, neither):
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return a, b


def test_newcombe_matches_the_published_worked_example():
    # Cavo et al.: 59 both, 6 before only, 16 after only, 80 neither. The book's difference is
    # before - after = -0.0621 (-0.1186 to -0.0046); ours is B - A with A = before.
    ci = paired_share_difference(*_table(59, 6, 16, 80))
    assert ci.estimate == pytest.approx(10 / 161)
    assert (round(ci.low, 4), round(ci.high, 4)) == (0.0046, 0.1186)
    assert (ci.events, ci.n_items, ci.method) == (22.0, 161, "newcombe_paired")


@pytest.mark.parametrize("cells", [(1, 1, 7, 12), (0, 0, 3, 17), (10, 2, 2, 6), (5, 0, 0, 15),
                                   (0, 4, 0, 0)])
def test_newcombe_is_square_and_add_over_scipys_wilson_bounds(cells):
    both, a_only, b_only, neither = cells
    n = sum(cells)
    pa, pb = (both + a_only) / n, (both + b_only) / n
    la, ua = (lambda c: (c.low, c.high))(stats.binomtest(both + a_only, n).proportion_ci(
        method="wilson"))
    lb, ub = (lambda c: (c.low, c.high))(stats.binomtest(both + b_only, n).proportion_ci(
        method="wilson"))
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    cross = both * neither - a_only * b_only
    cross = cross - n / 2 if cross > n / 2 else (0 if cross >= 0 else cross)
    phi = cross / math.sqrt(margins) if margins else 0.0
    d = pb - pa
    low = d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2 - 2 * phi * (pb - lb) * (ua - pa))
    high = d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2 - 2 * phi * (ub - pb) * (pa - la))
    ci = paired_share_difference(*_table(*cells))
    assert (ci.low, ci.high) == pytest.approx((max(-1, low), min(1, high)), abs=1e-12)


def test_identical_versions_are_not_a_certain_zero_difference():
    ci = paired_share_difference([False] * 20, [False] * 20)
    assert ci.estimate == 0.0
    # Both rates 0 of 20: Wilson's upper bound 0.1611 on each side, phi 0.
    assert (ci.low, ci.high) == pytest.approx((-0.1611, 0.1611), abs=1e-4)
    every_image_fixed = paired_share_difference([True] * 4, [False] * 4)
    assert every_image_fixed.estimate == -1.0 and every_image_fixed.high > -1.0


def test_paired_ratio_difference_is_square_and_add_over_the_ratio_intervals():
    xa, ma = [2, 0, 1, 3, 0, 1], [4, 2, 3, 5, 1, 2]
    xb, mb = [1, 0, 0, 2, 0, 0], [3, 2, 3, 4, 2, 2]
    ra, rb = ratio_interval(xa, ma), ratio_interval(xb, mb)
    za = (np.array(xa) - ra.estimate * np.array(ma)) / sum(ma)
    zb = (np.array(xb) - rb.estimate * np.array(mb)) / sum(mb)
    rho = stats.pearsonr(za, zb).statistic
    d = rb.estimate - ra.estimate
    low = d - math.sqrt((rb.estimate - rb.low) ** 2 + (ra.high - ra.estimate) ** 2
                        - 2 * rho * (rb.estimate - rb.low) * (ra.high - ra.estimate))
    high = d + math.sqrt((rb.high - rb.estimate) ** 2 + (ra.estimate - ra.low) ** 2
                         - 2 * rho * (rb.high - rb.estimate) * (ra.estimate - ra.low))
    ci = paired_ratio_difference(xa, ma, xb, mb)
    assert ci.estimate == pytest.approx(d)
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12)
    assert (ci.n_items, ci.method) == (6, "mover_paired_ratio")


def test_paired_inputs_must_pair():
    with pytest.raises(ValueError, match="a has 2, b has 1"):
        paired_share_difference([True, False], [True])
    with pytest.raises(ValueError, match="A has 2, B has 3"):
        paired_ratio_difference([0, 1], [1, 1], [0, 1, 0], [1, 1, 1])


# --- McNemar ------------------------------------------------------------------------------
@pytest.mark.parametrize(("b", "c"), [(1, 8), (5, 21), (10, 16), (0, 25), (14, 13), (300, 420),
                                      (600, 700), (0, 0)])
def test_mcnemar_is_scipys_exact_binomial_test(b, c):
    expected = stats.binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0
    result = mcnemar_counts(b, c)
    assert result.p_value == pytest.approx(expected, rel=1e-9)
    assert (result.b, result.c, result.method) == (b, c, "exact")


def test_mcnemar_has_no_chi_square_regime():
    # At b=5, c=21 the continuity-corrected chi-square p (0.0033) is 31 % off the exact one.
    exact = stats.binomtest(5, 26, 0.5).pvalue
    chi2 = stats.chi2.sf((abs(5 - 21) - 1) ** 2 / 26, 1)
    assert abs(chi2 - exact) / exact > 0.3
    assert mcnemar_counts(5, 21).p_value == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(("b", "c"), [(1, 8), (5, 21), (3, 3), (0, 6)])
def test_mid_p_is_the_exact_p_less_half_the_observed_point(b, c):
    n, k = b + c, min(b, c)
    expected = min(1.0, 2 * (stats.binom.cdf(k, n, 0.5) - stats.binom.pmf(k, n, 0.5) / 2))
    assert mcnemar_counts(b, c, mid_p=True).p_value == pytest.approx(expected, rel=1e-9)


def test_mcnemar_counts_discordant_pairs_from_outcomes():
    a = [True, True, False, False, True, False, True]
    b = [False, True, True, True, False, False, True]
    r = mcnemar(a, b)
    assert (r.b, r.c) == (2, 2)
    with pytest.raises(ValueError, match="a has 2, b has 1"):
        mcnemar([True, False], [True])
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_counts(-1, 3)


def test_docstring_examples_run():
    assert doctest.testmod(intervals).failed == 0
