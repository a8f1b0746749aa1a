"""Uncertainty for rates: bootstrap confidence intervals and McNemar's paired test.

A rate here is ``sum(numerators) / sum(denominators)`` over items (images): a plain share of
rows when every denominator is 1 (count errors per image), a ratio when they vary
(hallucinations per mention). Resampling is over items, so the mentions of one image stay
together, as they should: they are not independent.

Both bootstrap functions are percentile bootstraps, deterministic for a seed (numpy's PCG64).
The paired version resamples the *same* items for both prompt versions, which is what makes
"v2 minus v1" tight when both were run on the same images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Resamples per interval: percentile endpoints of a 95% CI move by well under a point at 2000.
DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
# Resampled index matrices are built in blocks of at most this many cells (8 bytes each), so
# memory stays under ~32 MB whatever the number of items.
_BLOCK_CELLS = 4_000_000
# McNemar: the exact binomial test when b + c <= this; beyond it the chi-square approximation
# (with continuity correction) is within a few percent of the exact p-value. 25 is the usual
# textbook cut-off.
EXACT_MAX_DISCORDANT = 25


@dataclass(frozen=True)
class RateCI:
    """A rate (or a difference of rates) with its bootstrap confidence interval.

    Attributes:
        estimate: the rate on the full data.
        low: lower percentile bound.
        high: upper percentile bound.
        confidence: e.g. 0.95.
        n_items: items resampled.
        n_resamples: resamples that defined the rate (a resample whose denominators sum to 0
            has no rate and is dropped).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_items: int
    n_resamples: int


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on paired yes/no outcomes of two versions, A and B, on the same items.

    Attributes:
        b: items where A is true and B is false.
        c: items where A is false and B is true.
        statistic: ``min(b, c)`` for the exact test; the continuity-corrected chi-square
            ``max(0, |b - c| - 1)^2 / (b + c)`` otherwise.
        p_value: two-sided.
        method: ``"exact"`` or ``"chi2_cc"``.
    """

    b: int
    c: int
    statistic: float
    p_value: float
    method: str


def _arrays(numerators: Sequence[float], denominators: Sequence[float] | None,
            name: str) -> tuple[np.ndarray, np.ndarray]:
    """Float arrays, checked: same length, at least one item, denominators not summing to 0."""
    num = np.asarray(numerators, dtype=float)
    den = np.ones_like(num) if denominators is None else np.asarray(denominators, dtype=float)
    if num.ndim != 1 or num.size == 0:
        raise ValueError(f"{name}: need a non-empty 1-D sequence, got shape {num.shape}")
    if den.shape != num.shape:
        raise ValueError(f"{name}: {num.size} numerators but {den.size} denominators")
    if den.sum() == 0:
        raise ValueError(f"{name}: denominators sum to 0, the rate is undefined")
    return num, den


def _check(confidence: float, n_resamples: int) -> None:
    """Reject a confidence outside (0, 1) or fewer than one resample."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")


def _resampled_rates(columns: Sequence[np.ndarray], n_resamples: int, seed: int,
                     combine: Callable[..., np.ndarray]) -> np.ndarray:
    """``combine(*resampled column sums)`` for each resample; NaN rows are dropped."""
    n = columns[0].size
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n)
    out = []
    for start in range(0, n_resamples, block):
        idx = rng.integers(0, n, size=(min(block, n_resamples - start), n))
        sums = [col[idx].sum(axis=1) for col in columns]
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(combine(*sums))
    rates = np.concatenate(out)
    return rates[~np.isnan(rates)]


def _interval(estimate: float, rates: np.ndarray, confidence: float, n: int) -> RateCI:
    """The percentile interval of resampled ``rates`` around ``estimate``."""
    tail = (1 - confidence) / 2
    low, high = np.quantile(rates, [tail, 1 - tail])
    return RateCI(estimate=float(estimate), low=float(low), high=float(high),
                  confidence=confidence, n_items=n, n_resamples=int(rates.size))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, NaN where ``den`` is 0."""
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def bootstrap_ci(numerators: Sequence[float], denominators: Sequence[float] | None = None, *,
                 confidence: float = DEFAULT_CONFIDENCE, n_resamples: int = DEFAULT_RESAMPLES,
                 seed: int = 0) -> RateCI:
    """Percentile bootstrap CI of ``sum(numerators) / sum(denominators)``, items resampled.

    Args:
        numerators: one value per item (0/1 flags, or counts such as hallucinated mentions).
        denominators: one per item (e.g. judged mentions); None means 1 each (a plain share).
        confidence: the interval's coverage.
        n_resamples: bootstrap resamples.
        seed: the same seed gives the same interval.

    Returns:
        A ``RateCI``.

    Raises:
        ValueError: empty input, mismatched lengths, or denominators that sum to 0.

    Example:
        >>> ci = bootstrap_ci([1, 1, 1, 1])
        >>> (ci.estimate, ci.low, ci.high)
        (1.0, 1.0, 1.0)
    """
    _check(confidence, n_resamples)
    num, den = _arrays(numerators, denominators, "numerators")
    rates = _resampled_rates([num, den], n_resamples, seed, _ratio)
    return _interval(num.sum() / den.sum(), rates, confidence, num.size)


def paired_bootstrap_diff_ci(
    numerators_a: Sequence[float], numerators_b: Sequence[float],
    denominators_a: Sequence[float] | None = None, denominators_b: Sequence[float] | None = None,
    *, confidence: float = DEFAULT_CONFIDENCE, n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> RateCI:
    """Percentile bootstrap CI of ``rate(B) - rate(A)`` for two versions on the same items.

    Item ``i`` of A and item ``i`` of B must be the same image; each resample draws items once
    and takes both versions' values for them, so the difference keeps the pairing.

    Returns:
        A ``RateCI`` of the difference (negative: B's rate is lower).

    Raises:
        ValueError: as ``bootstrap_ci``, or A and B of different lengths.

    Example:
        >>> paired_bootstrap_diff_ci([1, 0, 1, 0], [0, 0, 1, 0]).estimate
        -0.25
    """
    _check(confidence, n_resamples)
    num_a, den_a = _arrays(numerators_a, denominators_a, "numerators_a")
    num_b, den_b = _arrays(numerators_b, denominators_b, "numerators_b")
    if num_a.size != num_b.size:
        raise ValueError(f"paired items: A has {num_a.size}, B has {num_b.size}")
    rates = _resampled_rates(
        [num_a, den_a, num_b, den_b], n_resamples, seed,
        lambda na, da, nb, db: _ratio(nb, db) - _ratio(na, da),
    )
    estimate = num_b.sum() / den_b.sum() - num_a.sum() / den_a.sum()
    return _interval(estimate, rates, confidence, num_a.size)


def _exact_p(b: int, c: int) -> float:
    """Two-sided exact binomial p-value: 2 * P(X <= min(b, c)), X ~ Binomial(b + c, 1/2)."""
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def mcnemar_counts(b: int, c: int) -> McNemarResult:
    """McNemar's test from the discordant counts ``b`` (A yes, B no) and ``c`` (A no, B yes).

    Exact binomial when ``b + c <= EXACT_MAX_DISCORDANT``, else chi-square with continuity
    correction on 1 degree of freedom (p from ``erfc``, no scipy). No discordant pair: p = 1.

    Example:
        >>> mcnemar_counts(1, 8).p_value
        0.0390625
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c <= EXACT_MAX_DISCORDANT:
        return McNemarResult(b, c, float(min(b, c)), _exact_p(b, c), "exact")
    stat = max(0, abs(b - c) - 1) ** 2 / (b + c)
    return McNemarResult(b, c, float(stat), math.erfc(math.sqrt(stat / 2)), "chi2_cc")


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> McNemarResult:
    """McNemar's test on paired outcomes: ``a[i]`` and ``b[i]`` are the same item's flag
    (e.g. "count wrong") under versions A and B.

    Raises:
        ValueError: ``a`` and ``b`` differ in length.

    Example:
        >>> r = mcnemar([True, True, False, False], [False, True, True, True])
        >>> (r.b, r.c, r.method)
        (1, 2, 'exact')
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes: a has {len(a)}, b has {len(b)}")
    pairs = list(zip(map(bool, a), map(bool, b), strict=True))
    return mcnemar_counts(sum(x and not y for x, y in pairs), sum(y and not x for x, y in pairs))
