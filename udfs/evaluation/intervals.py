"""Confidence intervals that cover, and McNemar's exact test: the only interval methods the
product prints (their measured coverage is in docs/EVAL.md, from ``benchmarks/bench_coverage.py``).

Why not a percentile bootstrap: with every outcome equal (0 of 20 flagged) every resample is
equal too, and the interval collapses to ``0.00..0.00``; near zero, where a grounded prompt's
rates live, its real coverage was measured at 62-85 % for a nominal 95 %. The methods here:

- ``share_interval``: a yes/no rate per image (k of n). Clopper-Pearson, exact: its coverage
  is at least the nominal level at every n and p, by construction (conservative by design).
  Wilson's dips to 92 % at n=50, p=0.02 (docs/EVAL.md), which is where this product measures.
- ``ratio_interval``: a rate over units nested in images (hallucinated mentions per judged
  mention). The mentions of one description are not independent, so the ratio estimator's
  variance is the cluster-robust (linearised, delta-method) one over images; it gives a design
  effect, and the interval is Clopper-Pearson at the effective sample size, shrunk for a
  variance estimated from few images (Korn and Graubard 1998). With no event at all there is
  no variance to measure: the images are then the independent units, which is right whatever
  the correlation inside one.
- ``paired_share_difference``: B's rate minus A's on the same images, yes/no per image:
  Newcombe's hybrid score interval for paired proportions (1998, method 10).
- ``paired_ratio_difference``: the same for ratio rates: the square-and-add recipe Newcombe's
  method is an instance of (MOVER, Zou and Donner 2008) over the two ``ratio_interval`` bounds,
  with the correlation of the two versions' linearised values.
- ``mcnemar``: exact conditional (binomial) test on the discordant pairs, at every count: no
  chi-square approximation (at b=5, c=21 it is 31 % off the exact p). ``mid_p`` is offered and
  documented, not used by the product.

No scipy: the beta and t quantiles are in ``udfs.evaluation.distributions``. Tests hold every
method against scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from udfs.evaluation.distributions import beta_quantile, t_quantile

DEFAULT_CONFIDENCE = 0.95
# Method names, as RateCI.method and docs/EVAL.md's coverage table say them.
CLOPPER_PEARSON = "clopper_pearson"
CLUSTER_RATIO = "cluster_ratio"
NEWCOMBE_PAIRED = "newcombe_paired"
MOVER_PAIRED_RATIO = "mover_paired_ratio"


@dataclass(frozen=True)
class RateCI:
    """A rate (or a difference of rates) with its confidence interval.

    Attributes:
        estimate: the rate on the data.
        low: lower bound.
        high: upper bound.
        confidence: e.g. 0.95.
        method: which method made the interval (one of the names above).
        n_items: images the rate is over (the independent units).
        events: the numerator's total (e.g. 0 flagged images, 3 hallucinated mentions);
            for a paired yes/no difference the discordant images ``b + c``, for a paired
            ratio difference both versions' events.
        total: the denominator's total (images, or judged mentions).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n_items: int
    events: float
    total: float

    @property
    def counted(self) -> bool:
        """The rate is whole events over whole units (``3 of 20``), so it can be said so."""
        return float(self.events).is_integer() and float(self.total).is_integer()


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on paired yes/no outcomes of versions A and B on the same items.

    Attributes:
        b: items where A is yes and B is no.
        c: items where A is no and B is yes.
        p_value: two-sided, exact conditional binomial (``mid_p``: the mid-p variant).
        method: ``"exact"`` or ``"mid_p"``.
    """

    b: int
    c: int
    p_value: float
    method: str


def z_value(confidence: float) -> float:
    """The two-sided normal quantile, e.g. 1.96 for 0.95."""
    check_confidence(confidence)
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def check_confidence(confidence: float) -> None:
    """Raises ValueError unless ``confidence`` is a level strictly between 0 and 1."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def clopper_pearson(events: float, n: float, confidence: float = DEFAULT_CONFIDENCE
                    ) -> tuple[float, float]:
    """The exact (Clopper-Pearson) bounds for ``events`` of ``n``; both may be fractional
    (an effective sample size), through the beta form of the binomial tails.

    Example:
        >>> low, high = clopper_pearson(0, 20)
        >>> low, round(high, 4)
        (0.0, 0.1684)
    """
    check_confidence(confidence)
    if n <= 0 or not 0 <= events <= n:
        raise ValueError(f"need 0 <= events <= n and n > 0, got events={events}, n={n}")
    tail = (1 - confidence) / 2
    low = 0.0 if events == 0 else beta_quantile(tail, events, n - events + 1)
    high = 1.0 if events == n else beta_quantile(1 - tail, events + 1, n - events)
    return low, high


def wilson(events: float, n: float, confidence: float = DEFAULT_CONFIDENCE
           ) -> tuple[float, float]:
    """Wilson's score bounds for ``events`` of ``n`` (Newcombe's paired interval is built on
    them).

    Example:
        >>> [round(v, 4) for v in wilson(0, 20)]
        [0.0, 0.1611]
    """
    if n <= 0 or not 0 <= events <= n:
        raise ValueError(f"need 0 <= events <= n and n > 0, got events={events}, n={n}")
    z = z_value(confidence)
    p = events / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if events == 0 else max(0.0, centre - half)
    return low, 1.0 if events == n else min(1.0, centre + half)


# --- one rate ---------------------------------------------------------------------------------
def share_interval(events: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> RateCI:
    """``events`` of ``n`` images (a yes/no rate per image), Clopper-Pearson.

    Example:
        >>> ci = share_interval(0, 20)
        >>> (ci.estimate, ci.low, round(ci.high, 2))
        (0.0, 0.0, 0.17)
    """
    low, high = clopper_pearson(events, n, confidence)
    return RateCI(events / n, low, high, confidence, CLOPPER_PEARSON, int(n), float(events),
                  float(n))


def _checked(numerators: Sequence[float], denominators: Sequence[float]
             ) -> tuple[list[float], list[float]]:
    num, den = [float(v) for v in numerators], [float(v) for v in denominators]
    if len(num) != len(den):
        raise ValueError(f"{len(num)} numerators but {len(den)} denominators")
    if not num:
        raise ValueError("need at least one image")
    if any(d < 0 or not 0 <= x <= d for x, d in zip(num, den, strict=True)):
        raise ValueError("each image needs 0 <= numerator <= denominator")
    if sum(den) == 0:
        raise ValueError("denominators sum to 0: the rate is undefined")
    return num, den


def _linearised(num: Sequence[float], den: Sequence[float]) -> tuple[float, list[float]]:
    """The ratio of sums and each image's linearised value ``(x_i - r m_i) / M``: their sum
    of squares, times n/(n-1), is the ratio's cluster-robust variance."""
    total = sum(den)
    rate = sum(num) / total
    return rate, [(x - rate * m) / total for x, m in zip(num, den, strict=True)]


def _effective_n(num: Sequence[float], den: Sequence[float], confidence: float
                 ) -> tuple[float, float]:
    """(rate, effective sample size) of a ratio of sums over images (Korn and Graubard 1998).

    The design effect is the cluster-robust variance over the binomial one; it is not let
    below 1 (n* <= total units), and n* is shrunk by (z / t_{images-1})^2, Korn and
    Graubard's allowance for a variance estimated from few images. With no event (or all
    events) there is no variance to measure: the images with units are then the effective
    sample, valid whatever the correlation inside an image (all-zero data is likeliest when
    an image's units are all alike, and then an image is one trial).
    """
    rate, z = _linearised(num, den)
    images = sum(1 for m in den if m > 0)
    total = sum(den)
    if rate in (0.0, 1.0) or images < 2:
        return rate, float(max(1, images))
    variance = images / (images - 1) * sum(v * v for v in z)
    n_eff = total if variance <= 0 else min(total, max(1.0, rate * (1 - rate) / variance))
    tail = 1 - (1 - confidence) / 2
    return rate, max(1.0, n_eff * (z_value(confidence) / t_quantile(tail, images - 1)) ** 2)


def ratio_interval(numerators: Sequence[float], denominators: Sequence[float],
                   confidence: float = DEFAULT_CONFIDENCE) -> RateCI:
    """``sum(numerators) / sum(denominators)`` over images, with Clopper-Pearson at the
    effective sample size (module docstring). Per-image values must lie in
    ``0 <= numerator <= denominator``; a mean of per-image fractions is numerators in [0, 1]
    over denominators of 1.

    Example:
        >>> ci = ratio_interval([0, 0, 0], [2, 5, 1])  # 0 of 8 mentions in 3 images
        >>> (ci.estimate, ci.low, round(ci.high, 2), ci.n_items, ci.total)
        (0.0, 0.0, 0.71, 3, 8.0)
    """
    num, den = _checked(numerators, denominators)
    rate, n_eff = _effective_n(num, den, confidence)
    low, high = clopper_pearson(rate * n_eff, n_eff, confidence)
    return RateCI(rate, low, high, confidence, CLUSTER_RATIO, len(num), sum(num), sum(den))


# --- two versions on the same images ----------------------------------------------------------
def _square_and_add(diff: float, a: tuple[float, float, float], b: tuple[float, float, float],
                    rho: float) -> tuple[float, float]:
    """MOVER bounds of ``rate_b - rate_a`` from each rate's (estimate, low, high) and their
    correlation ``rho`` (Newcombe 1998; Zou and Donner 2008)."""
    (ra, la, ua), (rb, lb, ub) = a, b
    down = math.sqrt(max(0.0, (rb - lb) ** 2 + (ua - ra) ** 2 - 2 * rho * (rb - lb) * (ua - ra)))
    up = math.sqrt(max(0.0, (ub - rb) ** 2 + (ra - la) ** 2 - 2 * rho * (ub - rb) * (ra - la)))
    return max(-1.0, diff - down), min(1.0, diff + up)


def _newcombe_phi(both: int, a_only: int, b_only: int, neither: int) -> float:
    """Newcombe's correlation of the paired yes/no outcomes: phi, with ``ad - bc`` shrunk by
    n/2 towards 0 when positive, and 0 when a margin is empty."""
    n = both + a_only + b_only + neither
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    if margins == 0:
        return 0.0
    cross = both * neither - a_only * b_only
    if cross > n / 2:
        cross -= n / 2
    elif cross >= 0:
        cross = 0
    return cross / math.sqrt(margins)


def paired_share_difference(a: Sequence[bool], b: Sequence[bool],
                            confidence: float = DEFAULT_CONFIDENCE) -> RateCI:
    """B's yes-rate minus A's, ``a[i]`` and ``b[i]`` the same image: Newcombe's method 10.

    Example:
        >>> ci = paired_share_difference([False] * 20, [False] * 20)
        >>> (ci.estimate, round(ci.low, 2), round(ci.high, 2))
        (0.0, -0.16, 0.16)
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes: a has {len(a)}, b has {len(b)}")
    if not a:
        raise ValueError("need at least one image")
    pairs = list(zip(map(bool, a), map(bool, b), strict=True))
    both = sum(x and y for x, y in pairs)
    a_only = sum(x and not y for x, y in pairs)
    b_only = sum(y and not x for x, y in pairs)
    n = len(pairs)
    ka, kb = both + a_only, both + b_only
    rates = [(k / n, *wilson(k, n, confidence)) for k in (ka, kb)]
    diff = (kb - ka) / n
    low, high = _square_and_add(diff, rates[0], rates[1],
                                _newcombe_phi(both, a_only, b_only, n - both - a_only - b_only))
    return RateCI(diff, low, high, confidence, NEWCOMBE_PAIRED, n, float(a_only + b_only),
                  float(n))


def _correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation; 0 when either side does not vary."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((u - mx) * (v - my) for u, v in zip(x, y, strict=True))
    sxx, syy = sum((u - mx) ** 2 for u in x), sum((v - my) ** 2 for v in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def paired_ratio_difference(
    numerators_a: Sequence[float], denominators_a: Sequence[float],
    numerators_b: Sequence[float], denominators_b: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
) -> RateCI:
    """B's ratio rate minus A's, image ``i`` the same in both: square-and-add over the two
    ``ratio_interval`` bounds, with the correlation of the linearised values across images.

    Example:
        >>> ci = paired_ratio_difference([0, 0], [3, 2], [0, 0], [1, 4])
        >>> ci.estimate, ci.low < 0 < ci.high, ci.n_items
        (0.0, True, 2)
    """
    if len(numerators_a) != len(numerators_b):
        raise ValueError(f"paired images: A has {len(numerators_a)}, B has {len(numerators_b)}")
    ra, rb = (ratio_interval(n, d, confidence) for n, d in
              ((numerators_a, denominators_a), (numerators_b, denominators_b)))
    rho = _correlation(_linearised(*_checked(numerators_a, denominators_a))[1],
                       _linearised(*_checked(numerators_b, denominators_b))[1])
    diff = rb.estimate - ra.estimate
    low, high = _square_and_add(diff, (ra.estimate, ra.low, ra.high),
                                (rb.estimate, rb.low, rb.high), rho)
    return RateCI(diff, low, high, confidence, MOVER_PAIRED_RATIO, len(numerators_a),
                  ra.events + rb.events, float(len(numerators_a)))


# --- McNemar ----------------------------------------------------------------------------------
def _binomial_half_pmf(k: int, n: int) -> float:
    """P(X = k) for X ~ Binomial(n, 1/2), in log space (no overflow at large n)."""
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    - n * math.log(2))


def mcnemar_counts(b: int, c: int, mid_p: bool = False) -> McNemarResult:
    """McNemar's exact test from the discordant counts ``b`` (A yes, B no) and ``c``
    (A no, B yes): under no difference each discordant pair goes either way with probability
    1/2, so ``min(b, c)`` is Binomial(b + c, 1/2) in the lower tail; p = 2 * that tail,
    at most 1. ``mid_p`` counts the observed value's own probability half (less conservative;
    Fagerland et al. 2013). No discordant pair: p = 1.

    Example:
        >>> mcnemar_counts(1, 8).p_value
        0.0390625
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n, k = b + c, min(b, c)
    if n == 0:
        return McNemarResult(b, c, 1.0, "mid_p" if mid_p else "exact")
    if n <= 1000:  # exact integers
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        point = math.comb(n, k) / 2**n
    else:
        tail = sum(_binomial_half_pmf(i, n) for i in range(k + 1))
        point = _binomial_half_pmf(k, n)
    p = 2 * (tail - point / 2) if mid_p else 2 * tail
    return McNemarResult(b, c, min(1.0, p), "mid_p" if mid_p else "exact")


def mcnemar(a: Sequence[bool], b: Sequence[bool], mid_p: bool = False) -> McNemarResult:
    """McNemar's exact test on paired outcomes: ``a[i]`` and ``b[i]`` are the same image's
    flag (e.g. "count wrong") under versions A and B.

    Example:
        >>> r = mcnemar([True, True, False, False], [False, True, True, True])
        >>> (r.b, r.c, r.method)
        (1, 2, 'exact')
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes: a has {len(a)}, b has {len(b)}")
    pairs = list(zip(map(bool, a), map(bool, b), strict=True))
    return mcnemar_counts(sum(x and not y for x, y in pairs),
                          sum(y and not x for x, y in pairs), mid_p)
