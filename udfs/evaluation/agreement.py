"""How well automatic signals agree with a person: Cohen's kappa with its interval, precision
and recall with Wilson intervals, and the AUROC of a confidence score with DeLong's interval.

``candid labels score`` compares human verdicts on a sample of result rows with what Candid
measured without a person (guardrail flags, the self-check audit, token log-probabilities).
Pure numpy and the standard library, no Spark.

Intervals:

- a proportion (an error rate, a precision): Wilson's score interval. It never collapses to
  zero width: 0 of 20 gives 0..0.16, not 0..0 (the percentile bootstrap's answer).
- Cohen's kappa: the large-sample standard error of Fleiss, Cohen & Everitt (1969), as SAS
  PROC FREQ prints it (``ASE``), with a Wald interval clipped to [-1, 1].
- AUROC: DeLong et al. (1988)'s variance of the Mann-Whitney estimate, with the interval built
  on the logit scale so it stays inside [0, 1].

Where the data leave a statistic without spread (every pair agrees, every positive outranks
every negative) the standard error is 0 and the interval would claim certainty: such results
are marked ``degenerate`` and must be shown as "not estimable", never as a zero-width interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

DEFAULT_CONFIDENCE = 0.95


def z_value(confidence: float) -> float:
    """The two-sided standard normal quantile: 1.96 for 0.95."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


@dataclass(frozen=True)
class Proportion:
    """``successes`` of ``n`` with Wilson's score interval (None estimate when n is 0)."""

    successes: int
    n: int
    estimate: float | None
    low: float
    high: float
    confidence: float


def wilson(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Proportion:
    """Wilson's score interval for a binomial proportion.

    With n = 0 nothing is known: the estimate is None and the interval is 0..1.

    Example:
        >>> p = wilson(0, 20)
        >>> (p.estimate, p.low, round(p.high, 4))
        (0.0, 0.0, 0.1611)
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return Proportion(0, 0, None, 0.0, 1.0, confidence)
    z = z_value(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 or n successes one bound is exactly the observed rate; rounding must not move it.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Proportion(successes, n, p, low, high, confidence)


@dataclass(frozen=True)
class Kappa:
    """Cohen's kappa of two raters on ``n`` items.

    Attributes:
        kappa: (observed - expected) / (1 - expected); None when undefined (both raters put
            every item in the same single category: expected agreement is 1).
        se: the large-sample standard error (SAS's ASE); low, high: the Wald interval.
        observed, expected: agreement proportions (expected: by chance, from the marginals).
        degenerate: the standard error is 0 (e.g. perfect agreement): the interval is not
            estimable and must not be shown as one.
    """

    kappa: float | None
    se: float | None
    low: float | None
    high: float | None
    n: int
    observed: float | None
    expected: float | None
    confidence: float
    degenerate: bool


def cohens_kappa(table: Sequence[Sequence[float]] | np.ndarray,
                 confidence: float = DEFAULT_CONFIDENCE) -> Kappa:
    """Unweighted Cohen's kappa of a square table of counts (rows: rater A's category,
    columns: rater B's), with Fleiss, Cohen & Everitt's standard error.

    Example:
        >>> k = cohens_kappa([[20, 5], [10, 15]])
        >>> round(k.kappa, 3), k.n
        (0.4, 50)
    """
    counts = np.asarray(table, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or (counts < 0).any():
        raise ValueError(f"need a square table of non-negative counts, got shape {counts.shape}")
    n = int(round(counts.sum()))
    if n == 0:
        return Kappa(None, None, None, None, 0, None, None, confidence, True)
    p = counts / counts.sum()
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    observed, expected = float(np.trace(p)), float(rows @ cols)
    if math.isclose(expected, 1.0):
        return Kappa(None, None, None, None, n, observed, expected, confidence, True)
    kappa = (observed - expected) / (1 - expected)
    se = math.sqrt(max(0.0, _kappa_variance(p, rows, cols, kappa, expected, n)))
    if se == 0:
        return Kappa(kappa, 0.0, None, None, n, observed, expected, confidence, True)
    z = z_value(confidence)
    low, high = max(-1.0, kappa - z * se), min(1.0, kappa + z * se)
    return Kappa(kappa, se, low, high, n, observed, expected, confidence, False)


def _kappa_variance(p: np.ndarray, rows: np.ndarray, cols: np.ndarray, kappa: float,
                    expected: float, n: int) -> float:
    """Fleiss, Cohen & Everitt (1969), eq. 13: the variance of kappa when it is not 0."""
    diagonal = np.diag(p) * (1 - (rows + cols) * (1 - kappa)) ** 2
    # Off the diagonal: p_ij (p_.i + p_j.)^2 for i != j.
    spread = (cols[:, None] + rows[None, :]) ** 2 * p
    np.fill_diagonal(spread, 0.0)
    total = diagonal.sum() + (1 - kappa) ** 2 * spread.sum()
    total -= (kappa - expected * (1 - kappa)) ** 2
    return float(total / (n * (1 - expected) ** 2))


@dataclass(frozen=True)
class BinaryAgreement:
    """A yes/no signal against a person's yes/no, on the same items.

    Attributes:
        both, signal_only, human_only, neither: the 2x2 counts.
        kappa: Cohen's kappa of the two.
        precision: of the items the signal marks, the share the person marks too.
        recall: of the items the person marks, the share the signal marks.
    """

    both: int
    signal_only: int
    human_only: int
    neither: int
    kappa: Kappa
    precision: Proportion
    recall: Proportion

    @property
    def n(self) -> int:
        return self.both + self.signal_only + self.human_only + self.neither


def binary_agreement(human: Sequence[bool], signal: Sequence[bool],
                     confidence: float = DEFAULT_CONFIDENCE) -> BinaryAgreement:
    """Agreement of ``signal`` with ``human``, item by item.

    Example:
        >>> a = binary_agreement([True, True, False, False], [True, False, False, False])
        >>> (a.both, a.human_only, a.precision.estimate, a.recall.estimate)
        (1, 1, 1.0, 0.5)
    """
    if len(human) != len(signal):
        raise ValueError(f"human and signal differ in length: {len(human)} vs {len(signal)}")
    pairs = list(zip((bool(h) for h in human), (bool(s) for s in signal), strict=True))
    both = sum(h and s for h, s in pairs)
    human_only = sum(h and not s for h, s in pairs)
    signal_only = sum(s and not h for h, s in pairs)
    neither = len(pairs) - both - human_only - signal_only
    kappa = cohens_kappa([[both, human_only], [signal_only, neither]], confidence)
    return BinaryAgreement(
        both, signal_only, human_only, neither, kappa,
        precision=wilson(both, both + signal_only, confidence),
        recall=wilson(both, both + human_only, confidence),
    )


@dataclass(frozen=True)
class Auroc:
    """The area under the ROC curve of a score separating positives from negatives.

    Attributes:
        estimate: P(score of a positive > score of a negative) + half the ties; None when a
            class is empty.
        se: DeLong's standard error; low, high: the interval (logit scale, back-transformed).
        degenerate: no interval can be estimated (a class with fewer than 2 items, or no
            spread: e.g. every positive outranks every negative).
    """

    estimate: float | None
    se: float | None
    low: float | None
    high: float | None
    n_positive: int
    n_negative: int
    confidence: float
    degenerate: bool


def auroc(positives: Sequence[float], negatives: Sequence[float],
          confidence: float = DEFAULT_CONFIDENCE) -> Auroc:
    """AUROC of a score (higher: more likely positive) with DeLong's interval.

    Example:
        >>> a = auroc([0.9, 0.8, 0.3], [0.1, 0.4, 0.35])
        >>> round(a.estimate, 4)  # 7 of the 9 (positive, negative) pairs are in order
        0.7778
    """
    pos, neg = np.asarray(positives, dtype=float), np.asarray(negatives, dtype=float)
    if np.isnan(pos).any() or np.isnan(neg).any():
        raise ValueError("scores must not be NaN: drop the rows without a score first")
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        return Auroc(None, None, None, None, m, n, confidence, True)
    # Placement values: each positive's share of negatives below it (ties count half), and
    # each negative's share of positives above it.
    sorted_neg, sorted_pos = np.sort(neg), np.sort(pos)
    v10 = (np.searchsorted(sorted_neg, pos, "left")
           + np.searchsorted(sorted_neg, pos, "right")) / (2 * n)
    v01 = ((m - np.searchsorted(sorted_pos, neg, "right"))
           + (m - np.searchsorted(sorted_pos, neg, "left"))) / (2 * m)
    estimate = float(v10.mean())
    if m < 2 or n < 2:
        return Auroc(estimate, None, None, None, m, n, confidence, True)
    se = math.sqrt(float(v10.var(ddof=1)) / m + float(v01.var(ddof=1)) / n)
    if se == 0 or estimate in (0.0, 1.0):
        return Auroc(estimate, se, None, None, m, n, confidence, True)
    z = z_value(confidence)
    logit = math.log(estimate / (1 - estimate))
    spread = z * se / (estimate * (1 - estimate))  # delta method on the logit scale
    low, high = _expit(logit - spread), _expit(logit + spread)
    return Auroc(estimate, se, low, high, m, n, confidence, False)


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))
