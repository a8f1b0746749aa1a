"""Agreement statistics against references independent of the code: SAS's printout of a
published kappa example, Newcombe's (1998) table of Wilson intervals, Hanley & McNeil's (1982)
rating data, and scipy/sklearn computed here."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from udfs.evaluation.agreement import auroc, binary_agreement, cohens_kappa, wilson

# --- Wilson -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (score, no correction).
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_newcombes_published_table(k, n, low, high):
    ci = wilson(k, n)
    assert (round(ci.low, 4), round(ci.high, 4)) == (low, high)
    assert ci.estimate == k / n


@pytest.mark.parametrize("n", [1, 7, 20, 50, 333])
def test_wilson_matches_scipy_for_every_count(n):
    for k in range(n + 1):
        ref = binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
        ci = wilson(k, n, confidence=0.9)
        assert ci.low == pytest.approx(ref.low, abs=1e-12)
        assert ci.high == pytest.approx(ref.high, abs=1e-12)


def test_wilson_never_has_zero_width_and_knows_nothing_of_nothing():
    assert wilson(0, 20).high > 0.15 and wilson(20, 20).low < 0.85
    empty = wilson(0, 0)
    assert (empty.estimate, empty.low, empty.high) == (None, 0.0, 1.0)
    with pytest.raises(ValueError, match="successes <= n"):
        wilson(3, 2)


# --- Cohen's kappa ----------------------------------------------------------------------------


def test_kappa_and_its_interval_match_the_sas_proc_freq_example():
    # SAS/STAT PROC FREQ "Simple Kappa Coefficient" printout for this 3x3 table:
    # kappa 0.4842, ASE 0.1380, 95% limits 0.2137 and 0.7547.
    k = cohens_kappa([[0, 4, 1], [0, 8, 0], [0, 1, 5]])
    assert round(k.kappa, 4) == 0.4842
    assert round(k.se, 4) == 0.1380
    assert (round(k.low, 4), round(k.high, 4)) == (0.2137, 0.7547)
    assert k.n == 19 and not k.degenerate


def test_kappa_point_estimate_matches_sklearn():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = rng.integers(0, 3, 60)
        b = np.where(rng.random(60) < 0.6, a, rng.integers(0, 3, 60))
        table = np.zeros((3, 3))
        np.add.at(table, (a, b), 1)
        assert cohens_kappa(table).kappa == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_perfect_agreement_is_degenerate_not_certain():
    k = cohens_kappa([[7, 0], [0, 5]])
    assert k.kappa == 1.0 and k.degenerate and k.low is None and k.high is None


def test_kappa_is_undefined_when_both_raters_use_one_category():
    k = cohens_kappa([[12, 0], [0, 0]])
    assert k.kappa is None and k.degenerate and k.observed == 1.0 and k.expected == 1.0


def test_kappa_interval_is_clipped_to_its_range():
    k = cohens_kappa([[1, 0], [1, 1]])  # tiny n: the Wald interval reaches past 1
    assert k.high <= 1.0 and k.low >= -1.0


def test_binary_agreement_counts_precision_and_recall():
    human = [True] * 6 + [False] * 14
    signal = [True] * 4 + [False] * 2 + [True] * 1 + [False] * 13
    a = binary_agreement(human, signal)
    assert (a.both, a.human_only, a.signal_only, a.neither, a.n) == (4, 2, 1, 13, 20)
    assert a.precision.estimate == pytest.approx(4 / 5) and a.precision.n == 5
    assert a.recall.estimate == pytest.approx(4 / 6) and a.recall.n == 6
    assert a.kappa.kappa == pytest.approx(cohen_kappa_score(human, signal))
    with pytest.raises(ValueError, match="differ in length"):
        binary_agreement([True], [])


# --- AUROC ------------------------------------------------------------------------------------


def test_auroc_of_hanley_and_mcneils_rating_data():
    # Hanley & McNeil (1982), Radiology 143:29, Table 1: five-point ratings of 58 normal and
    # 51 abnormal CT images; they give A = 0.893 and SE = 0.032 (their approximation).
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    a = auroc(abnormal, normal)
    assert round(a.estimate, 3) == 0.893
    assert a.se == pytest.approx(0.032, abs=0.003)
    assert a.low < a.estimate < a.high <= 1


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(7)
    for _ in range(20):
        pos, neg = rng.integers(0, 6, 25), rng.integers(0, 5, 40)
        labels = np.r_[np.ones(25), np.zeros(40)]
        ref = roc_auc_score(labels, np.r_[pos, neg])
        assert auroc(pos, neg).estimate == pytest.approx(ref, abs=1e-12)


def test_delong_variance_matches_its_definition_by_pairs():
    # DeLong et al. (1988): structural components from every (positive, negative) pair.
    rng = np.random.default_rng(11)
    pos, neg = rng.normal(1, 1, 17).round(1), rng.normal(0, 1, 23).round(1)
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    expected = np.sqrt(v10.var(ddof=1) / 17 + v01.var(ddof=1) / 23)
    assert auroc(pos, neg).se == pytest.approx(expected, rel=1e-12)


def test_auroc_interval_covers_the_true_area_about_95_percent_of_the_time():
    # Binormal scores with unit variances, means 1.19 apart: true AUROC = Phi(1.19 / sqrt 2).
    from statistics import NormalDist

    truth = NormalDist().cdf(1.19 / np.sqrt(2))
    rng = np.random.default_rng(2026)
    hits = sum(_covers(auroc(rng.normal(1.19, 1, 40), rng.normal(0, 1, 60)), truth)
               for _ in range(400))
    assert 0.92 <= hits / 400 <= 0.98


def _covers(a, truth: float) -> bool:
    return a.low <= truth <= a.high


def test_perfect_separation_and_tiny_classes_are_degenerate():
    perfect = auroc([3, 4, 5], [0, 1, 2])
    assert perfect.estimate == 1.0 and perfect.degenerate and perfect.low is None
    one = auroc([3], [0, 1, 2])
    assert one.estimate == 1.0 and one.degenerate
    empty = auroc([], [0, 1])
    assert empty.estimate is None and empty.degenerate and empty.n_positive == 0
    with pytest.raises(ValueError, match="NaN"):
        auroc([float("nan")], [1.0])
