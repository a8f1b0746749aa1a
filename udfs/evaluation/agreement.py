"""Cohen's kappa of two raters (a person and an automatic signal), with an interval that
covers.

``candid labels score`` compares human verdicts on a sample of result rows with what Candid
measured without a person (guardrail flags, the self-check audit). Rates, precision, recall and
AUROC come from ``udfs.evaluation.intervals`` and ``udfs.evaluation.separation``; this module
holds only what is particular to kappa. Pure numpy and the standard library, no Spark.

The interval: the equal-tailed interval of kappa under the posterior of the table's cell
probabilities given a Jeffreys prior, Dirichlet(counts + 1/2), by Monte Carlo with a fixed
seed (the same table always gives the same interval). Why not the Wald interval of Fleiss,
Cohen & Everitt's standard error (SAS PROC FREQ's ``ASE``): it is measured to cover 51 % at
n = 50 when one answer is rare (10 %) and the raters are independent, 72 % at n = 20 with
kappa 0.4, because the standard error shrinks with the estimate when the rare answer's
shared cell is small or empty; a percentile bootstrap over items covered 78 % at the first
point, and collapses at perfect agreement. The posterior interval covers 92.7-98.0 % at the
points measured, 94-96 % at n = 200 (``benchmarks/bench_coverage.py``; docs/EVAL.md says
which points lie outside 93-97 % and why). It never has zero width:
with no disagreement at all (kappa 1, where the standard error is 0) it still says how low
kappa may be. Where the posterior's bound falls short of the estimate itself (kappa 1, whose
posterior lies below 1), the bound is the estimate, as Clopper-Pearson's upper bound is 1 at
n of n. The standard error is still reported (``se``), as SAS prints it.

Kappa is undefined when both raters put every item in the same single category (expected
agreement is 1): such results have no estimate and no interval, and are printed as such.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from udfs.evaluation.intervals import DEFAULT_CONFIDENCE, check_confidence

# Method name, as docs/EVAL.md's coverage table says it.
KAPPA_POSTERIOR = "kappa_jeffreys_posterior"
# Jeffreys' prior: half an item in every cell of the table.
PRIOR_COUNT = 0.5
# Posterior draws: the Monte Carlo error of a bound is below 0.005 (docs/EVAL.md prints two
# decimals); a 2x2 table takes about 4 ms.
POSTERIOR_DRAWS = 20_000
# A fixed seed: the same table gives the same interval, run after run.
POSTERIOR_SEED = 20_261_206


@dataclass(frozen=True)
class Kappa:
    """Cohen's kappa of two raters on ``n`` items.

    Attributes:
        kappa: (observed - expected) / (1 - expected); None when undefined (both raters put
            every item in the same single category: expected agreement is 1).
        se: the large-sample standard error of Fleiss, Cohen & Everitt (1969), SAS's ASE
            (reported, not used for the interval).
        low, high: the Jeffreys-posterior interval (module docstring); None with kappa.
        observed, expected: agreement proportions (expected: by chance, from the marginals).
        method: how the interval was made.
    """

    kappa: float | None
    se: float | None
    low: float | None
    high: float | None
    n: int
    observed: float | None
    expected: float | None
    confidence: float
    method: str = KAPPA_POSTERIOR

    @property
    def estimable(self) -> bool:
        """An interval exists (kappa is defined)."""
        return self.low is not None and self.high is not None


def cohens_kappa(table: Sequence[Sequence[float]] | np.ndarray,
                 confidence: float = DEFAULT_CONFIDENCE) -> Kappa:
    """Unweighted Cohen's kappa of a square table of counts (rows: rater A's category,
    columns: rater B's), with its standard error and interval.

    Example:
        >>> k = cohens_kappa([[20, 5], [10, 15]])
        >>> round(k.kappa, 3), k.n, k.low < k.kappa < k.high
        (0.4, 50, True)
    """
    check_confidence(confidence)
    counts = np.asarray(table, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or (counts < 0).any():
        raise ValueError(f"need a square table of non-negative counts, got shape {counts.shape}")
    n = int(round(counts.sum()))
    if n == 0:
        return Kappa(None, None, None, None, 0, None, None, confidence)
    p = counts / counts.sum()
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    observed, expected = float(np.trace(p)), float(rows @ cols)
    if math.isclose(expected, 1.0):
        return Kappa(None, None, None, None, n, observed, expected, confidence)
    kappa = (observed - expected) / (1 - expected)
    se = math.sqrt(max(0.0, _kappa_variance(p, rows, cols, kappa, expected, n)))
    low, high = _posterior_interval(counts, confidence)
    return Kappa(kappa, se, min(low, kappa), max(high, kappa), n, observed, expected,
                 confidence)


def kappa_of_pairs(a: Sequence[bool], b: Sequence[bool],
                   confidence: float = DEFAULT_CONFIDENCE) -> Kappa:
    """Kappa of two yes/no raters, item by item (``a[i]`` and ``b[i]`` the same item).

    Example:
        >>> round(kappa_of_pairs([True, True, False, False], [True, False, False, False]).kappa, 2)
        0.5
    """
    if len(a) != len(b):
        raise ValueError(f"the two raters differ in length: {len(a)} vs {len(b)}")
    table = np.zeros((2, 2))
    for x, y in zip(a, b, strict=True):
        table[int(not x), int(not y)] += 1
    return cohens_kappa(table, confidence)


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


def _posterior_interval(counts: np.ndarray, confidence: float) -> tuple[float, float]:
    """Equal-tailed quantiles of kappa over Dirichlet(counts + 1/2) draws of the cells."""
    k = counts.shape[0]
    rng = np.random.default_rng(POSTERIOR_SEED)
    cells = rng.dirichlet(counts.ravel() + PRIOR_COUNT, size=POSTERIOR_DRAWS).reshape(-1, k, k)
    observed = np.trace(cells, axis1=1, axis2=2)
    expected = np.einsum("di,di->d", cells.sum(axis=2), cells.sum(axis=1))
    kappas = (observed - expected) / (1 - expected)
    tail = (1 - confidence) / 2
    low, high = np.quantile(kappas, [tail, 1 - tail])
    return float(low), float(high)
