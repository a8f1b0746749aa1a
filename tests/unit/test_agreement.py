"""Cohen's kappa against references independent of the code: SAS's printout of a published
example, sklearn's kappa, and the Jeffreys posterior drawn here with scipy (its own random
numbers, its own kappa arithmetic)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from udfs.evaluation.agreement import cohens_kappa, kappa_of_pairs


def _posterior_reference(table, confidence: float = 0.95) -> tuple[float, float]:
    """Equal-tailed quantiles of kappa under Dirichlet(counts + 1/2), 200 000 scipy draws."""
    counts = np.asarray(table, dtype=float)
    k = counts.shape[0]
    p = stats.dirichlet(counts.ravel() + 0.5).rvs(200_000, random_state=123).reshape(-1, k, k)
    observed = sum(p[:, i, i] for i in range(k))
    expected = sum(p[:, i, :].sum(axis=1) * p[:, :, i].sum(axis=1) for i in range(k))
    kappas = (observed - expected) / (1 - expected)
    tail = (1 - confidence) / 2
    low, high = np.quantile(kappas, [tail, 1 - tail])
    return float(low), float(high)


def test_kappa_and_its_standard_error_match_the_sas_proc_freq_example():
    # SAS/STAT PROC FREQ "Simple Kappa Coefficient" printout for this 3x3 table:
    # kappa 0.4842, ASE 0.1380, 95% (Wald) limits 0.2137 and 0.7547.
    k = cohens_kappa([[0, 4, 1], [0, 8, 0], [0, 1, 5]])
    assert round(k.kappa, 4) == 0.4842
    assert round(k.se, 4) == 0.1380
    # The standard error is SAS's: its Wald limits are kappa -/+ 1.96 ASE.
    z = stats.norm.ppf(0.975)
    assert (round(k.kappa - z * k.se, 4), round(k.kappa + z * k.se, 4)) == (0.2137, 0.7547)
    assert k.n == 19 and k.estimable


def test_kappa_point_estimate_matches_sklearn():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = rng.integers(0, 3, 60)
        b = np.where(rng.random(60) < 0.6, a, rng.integers(0, 3, 60))
        table = np.zeros((3, 3))
        np.add.at(table, (a, b), 1)
        assert cohens_kappa(table).kappa == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


@pytest.mark.parametrize("table", [
    [[10, 5], [5, 30]],   # moderate agreement
    [[3, 2], [2, 13]],    # a rare answer, n = 20
    [[0, 5], [5, 40]],    # no shared yes: the Wald interval is far too narrow here
    [[2, 1], [0, 5]],     # tiny n
    [[0, 4, 1], [0, 8, 0], [0, 1, 5]],  # the SAS table
])
def test_interval_is_the_jeffreys_posterior_interval(table):
    k = cohens_kappa(table)
    low, high = _posterior_reference(table)
    # Monte Carlo on both sides: each bound's error is below 0.005 (20 000 and 200 000 draws).
    assert k.low == pytest.approx(low, abs=0.012)
    assert k.high == pytest.approx(high, abs=0.012)
    assert k.low < k.kappa < k.high


def test_a_narrower_level_gives_a_narrower_interval():
    wide, narrow = cohens_kappa([[10, 5], [5, 30]]), cohens_kappa([[10, 5], [5, 30]], 0.8)
    low, high = _posterior_reference([[10, 5], [5, 30]], 0.8)
    assert narrow.low == pytest.approx(low, abs=0.012)
    assert narrow.high == pytest.approx(high, abs=0.012)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_the_same_table_always_gives_the_same_interval():
    first, second = cohens_kappa([[3, 2], [2, 13]]), cohens_kappa([[3, 2], [2, 13]])
    assert (first.low, first.high) == (second.low, second.high)


def test_perfect_agreement_is_not_certain():
    # No disagreement: kappa 1 and a standard error of 0, but kappa may well be far below 1.
    k = cohens_kappa([[1, 0], [0, 19]])
    assert k.kappa == 1.0 and k.se == 0.0
    low, high = _posterior_reference([[1, 0], [0, 19]])
    assert high < 1.0  # the posterior lies below the estimate: the bound is the estimate
    assert k.high == 1.0 and k.low == pytest.approx(low, abs=0.012) and k.low < 0.3


def test_a_signal_that_never_fires_has_kappa_0_with_a_real_interval():
    k = cohens_kappa([[0, 2], [0, 8]])  # the person found 2 errors; the signal said no to all
    assert k.kappa == 0.0 and k.se == 0.0
    low, high = _posterior_reference([[0, 2], [0, 8]])
    assert k.low == pytest.approx(low, abs=0.012) and k.high == pytest.approx(high, abs=0.012)
    assert k.low < 0 < k.high


def test_kappa_is_undefined_when_both_raters_use_one_category():
    k = cohens_kappa([[12, 0], [0, 0]])
    assert k.kappa is None and k.low is None and k.high is None and not k.estimable
    assert k.observed == 1.0 and k.expected == 1.0
    empty = cohens_kappa([[0, 0], [0, 0]])
    assert empty.kappa is None and empty.n == 0 and not empty.estimable


def test_bad_tables_and_levels_are_refused():
    with pytest.raises(ValueError, match="square table"):
        cohens_kappa([[1, 2, 3]])
    with pytest.raises(ValueError, match="square table"):
        cohens_kappa([[1, -1], [0, 2]])
    with pytest.raises(ValueError, match="confidence"):
        cohens_kappa([[1, 0], [0, 1]], confidence=1.0)


def test_kappa_of_pairs_builds_the_table_item_by_item():
    human = [True] * 6 + [False] * 14
    signal = [True] * 4 + [False] * 2 + [True] * 1 + [False] * 13
    k = kappa_of_pairs(human, signal)
    assert k.kappa == pytest.approx(cohen_kappa_score(human, signal), abs=1e-12)
    assert k.n == 20
    table = cohens_kappa([[4, 2], [1, 13]])
    assert (k.low, k.high) == (table.low, table.high)
    with pytest.raises(ValueError, match="differ in length"):
        kappa_of_pairs([True], [])
