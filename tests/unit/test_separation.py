"""AUROC with its interval, and a flag's precision and recall, on constructed data: the
estimate against scipy's Mann-Whitney U and a direct count of pairs, the variances written out
here."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats

from udfs.evaluation import separation
from udfs.evaluation.separation import auroc_interval, flag_agreement

RNG = np.random.default_rng(7)
LABELS = RNG.random(80) < 0.3
# A log-probability that is lower on hallucinated rows, with ties (rounded).
LOGPROB = np.round(-1.0 - 0.8 * LABELS + RNG.normal(scale=0.7, size=80), 1)


def test_auroc_is_the_mann_whitney_share_of_pairs():
    ci = auroc_interval(LOGPROB.tolist(), LABELS.tolist(), higher_is_suspicious=False)
    pairs = [(p, n) for p in LOGPROB[LABELS] for n in LOGPROB[~LABELS]]
    assert ci.estimate == pytest.approx(
        sum(1.0 if p < n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs))
    u = stats.mannwhitneyu(-LOGPROB[LABELS], -LOGPROB[~LABELS]).statistic
    assert ci.estimate == pytest.approx(u / (LABELS.sum() * (~LABELS).sum()), abs=1e-12)
    assert (ci.events, ci.n_items) == (float(LABELS.sum()), 80)


def test_auroc_interval_uses_the_larger_of_delong_and_hanley_mcneil():
    pos, neg = -LOGPROB[LABELS], -LOGPROB[~LABELS]
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    area = wins.mean()
    delong = wins.mean(axis=1).var(ddof=1) / pos.size + wins.mean(axis=0).var(ddof=1) / neg.size
    q1, q2 = area / (2 - area), 2 * area**2 / (1 + area)
    hanley = (area * (1 - area) + (pos.size - 1) * (q1 - area**2)
              + (neg.size - 1) * (q2 - area**2)) / (pos.size * neg.size)
    n_eff = area * (1 - area) / max(delong, hanley)
    ci = auroc_interval(LOGPROB.tolist(), LABELS.tolist(), higher_is_suspicious=False)
    assert ci.low == pytest.approx(stats.beta.ppf(0.025, area * n_eff, n_eff - area * n_eff + 1))
    assert ci.high == pytest.approx(stats.beta.ppf(0.975, area * n_eff + 1, n_eff - area * n_eff))


def test_perfect_separation_is_not_certain():
    ci = auroc_interval([0.9, 0.8, 0.7, 0.2, 0.1], [True, True, True, False, False])
    assert ci.estimate == 1.0 and ci.high == 1.0
    # Both variances are 0 at A = 1: the smaller class (2 rows) is the effective sample.
    assert ci.low == pytest.approx(0.025 ** (1 / 2))


def test_auroc_needs_both_kinds_of_rows_and_skips_missing_scores():
    assert auroc_interval([0.1, 0.2], [False, False]) is None
    assert auroc_interval([], []) is None
    ci = auroc_interval([0.9, math.nan, 0.1, 0.2], [True, True, False, False])
    assert (ci.estimate, ci.n_items) == (1.0, 3)
    with pytest.raises(ValueError, match="2 scores but 1 labels"):
        auroc_interval([0.1, 0.2], [True])


def test_flag_precision_and_recall_with_exact_intervals():
    flags = [True, True, True, False, False, False, True, False]
    labels = [True, False, True, True, False, False, False, False]
    agreement = flag_agreement(flags, labels)
    assert (agreement.flagged, agreement.labelled, agreement.both) == (4, 3, 2)
    assert agreement.precision.estimate == 0.5 and agreement.recall.estimate == pytest.approx(2 / 3)
    ref = stats.binomtest(2, 4).proportion_ci(method="exact")
    assert (agreement.precision.low, agreement.precision.high) == pytest.approx((ref.low, ref.high))
    nothing = flag_agreement([False, False], [False, True])
    assert nothing.precision is None and nothing.recall.estimate == 0.0


def test_docstring_examples_run():
    assert doctest.testmod(separation).failed == 0
