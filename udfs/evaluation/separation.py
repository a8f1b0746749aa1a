"""How well a confidence score separates hallucinated from grounded descriptions: AUROC with an
interval, and a yes/no flag's precision and recall for the same labels.

AUROC is the probability that a randomly chosen hallucinated row scores as more suspicious
than a randomly chosen grounded one (ties count half): 0.5 is no separation, 1.0 perfect. A
row's log-probability is *less* suspicious when higher, so callers pass ``-logprob`` or say
``higher_is_suspicious=False``.

The interval: the variance of the Mann-Whitney estimate, the larger of DeLong's (DeLong,
DeLong and Clarke-Pearson 1988) and Hanley and McNeil's (1982), turned into an effective
sample size ``A(1-A)/var`` and given to Clopper-Pearson, the recipe of
``udfs.evaluation.intervals.ratio_interval``. DeLong's alone covered 59-92 % with a handful of
hallucinated rows (its spread is then estimated from a few values); the larger of the two
covers 96 % or more at every point measured (docs/EVAL.md). The interval stays in [0, 1] and
does not collapse at A = 0 or 1, where both variances are 0: the smaller class is then the
effective sample (the largest variance an area can have is ``A(1-A)/min(m, n)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from udfs.evaluation.intervals import (
    DEFAULT_CONFIDENCE,
    RateCI,
    clopper_pearson,
    share_interval,
)

AUROC_EFFECTIVE_N = "auroc_effective_n"


def _placements(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: for each positive, the share of negatives it beats
    (ties half); for each negative, the share of positives that beat it."""
    greater = (positives[:, None] > negatives[None, :]).astype(float)
    ties = (positives[:, None] == negatives[None, :]).astype(float)
    wins = greater + ties / 2
    return wins.mean(axis=1), wins.mean(axis=0)


def _delong_variance(v10: np.ndarray, v01: np.ndarray) -> float:
    """DeLong's variance of the area from the placements (a class of one adds nothing: its
    spread cannot be estimated, which is why it is not used alone)."""
    variance = 0.0
    for placements in (v10, v01):
        if placements.size > 1:
            variance += float(placements.var(ddof=1)) / placements.size
    return variance


def _hanley_mcneil_variance(area: float, positives: int, negatives: int) -> float:
    """Hanley and McNeil's (1982) variance of the area, from the area and the class sizes
    alone (exponential score model)."""
    q1, q2 = area / (2 - area), 2 * area * area / (1 + area)
    return (area * (1 - area) + (positives - 1) * (q1 - area * area)
            + (negatives - 1) * (q2 - area * area)) / (positives * negatives)


def auroc_interval(scores: Sequence[float], labels: Sequence[bool], *,
                   higher_is_suspicious: bool = True,
                   confidence: float = DEFAULT_CONFIDENCE) -> RateCI | None:
    """AUROC of ``scores`` for ``labels`` (True: hallucinated) with its interval; None when
    one class is missing (nothing to separate).

    Args:
        scores: one per row; NaN rows are left out.
        labels: one per row.
        higher_is_suspicious: False for scores where low means suspicious (log-probabilities).
        confidence: the interval's level.

    Raises:
        ValueError: ``scores`` and ``labels`` differ in length.

    Example:
        >>> ci = auroc_interval([0.9, 0.8, 0.3, 0.1], [True, True, False, False])
        >>> ci.estimate, ci.low < 1.0, ci.n_items
        (1.0, True, 4)
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    values = np.asarray(scores, dtype=float) * (1.0 if higher_is_suspicious else -1.0)
    flags = np.asarray(labels, dtype=bool)
    keep = ~np.isnan(values)
    values, flags = values[keep], flags[keep]
    positives, negatives = values[flags], values[~flags]
    if positives.size == 0 or negatives.size == 0:
        return None
    v10, v01 = _placements(positives, negatives)
    area = float(v10.mean())
    variance = max(_delong_variance(v10, v01), _hanley_mcneil_variance(
        area, positives.size, negatives.size))
    smaller = float(min(positives.size, negatives.size))
    n_eff = area * (1 - area) / variance if variance > 0 and 0 < area < 1 else smaller
    n_eff = max(1.0, min(n_eff, float(positives.size * negatives.size)))
    low, high = clopper_pearson(area * n_eff, n_eff, confidence)
    return RateCI(area, low, high, confidence, AUROC_EFFECTIVE_N, int(values.size),
                  float(positives.size), float(values.size))


@dataclass(frozen=True)
class FlagAgreement:
    """A yes/no flag held against the same rows' labels.

    Attributes:
        precision: labelled rows among flagged rows (None: nothing flagged).
        recall: flagged rows among labelled rows (None: nothing labelled).
        flagged: rows flagged; ``labelled``: rows labelled; ``both``: flagged and labelled.
    """

    precision: RateCI | None
    recall: RateCI | None
    flagged: int
    labelled: int
    both: int


def flag_agreement(flags: Sequence[bool], labels: Sequence[bool],
                   confidence: float = DEFAULT_CONFIDENCE) -> FlagAgreement:
    """Precision and recall of ``flags`` for ``labels``, each a share with its
    Clopper-Pearson interval.

    Example:
        >>> a = flag_agreement([True, True, False, False], [True, False, True, False])
        >>> a.precision.estimate, a.recall.estimate, a.both
        (0.5, 0.5, 1)
    """
    if len(flags) != len(labels):
        raise ValueError(f"{len(flags)} flags but {len(labels)} labels")
    pairs = list(zip(map(bool, flags), map(bool, labels), strict=True))
    flagged = sum(f for f, _ in pairs)
    labelled = sum(y for _, y in pairs)
    both = sum(f and y for f, y in pairs)
    return FlagAgreement(
        precision=share_interval(both, flagged, confidence) if flagged else None,
        recall=share_interval(both, labelled, confidence) if labelled else None,
        flagged=flagged, labelled=labelled, both=both,
    )
