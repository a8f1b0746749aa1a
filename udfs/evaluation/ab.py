"""A/B verdicts: each rate with a bootstrap confidence interval, and for two versions on the
same images a paired difference with its interval and McNemar's test.

This composes ``udfs.evaluation.stats`` for the two places that judge prompt versions: ``candid eval
score`` (grounding rates against known truth) and ``candid compare`` (guardrail flag rates on a
real sample). A rate is always ``sum(numerators) / sum(denominators)`` over images, so the
mentions of one image are resampled together.

Conventions: in a pair, A is the baseline and B the candidate; a difference is ``B - A``
(negative: B's rate is lower). McNemar is only run on metrics that are one yes/no per image.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from udfs.evaluation.stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    McNemarResult,
    RateCI,
    bootstrap_ci,
    mcnemar,
    paired_bootstrap_diff_ci,
)

# Below this a p-value is printed as "<0.0001": more digits only suggest false precision.
SMALLEST_SHOWN_P = 1e-4
# Per-image values of one metric: (numerators, denominators), aligned by image.
Arrays = tuple[Sequence[float], Sequence[float]]


@dataclass(frozen=True)
class BootstrapSettings:
    """How intervals are drawn (the same seed gives the same intervals)."""

    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0


DEFAULT_BOOTSTRAP = BootstrapSettings()


def rate_ci(arrays: Arrays, settings: BootstrapSettings = DEFAULT_BOOTSTRAP) -> RateCI | None:
    """The rate of ``arrays`` with its bootstrap interval; None when it is undefined (no image,
    or denominators summing to 0), so a caller never reports a made-up 0.

    Example:
        >>> rate_ci(([1, 0, 1, 1], [1, 1, 1, 1])).estimate
        0.75
        >>> rate_ci(([], [])) is None
        True
    """
    numerators, denominators = arrays
    if not numerators or not sum(denominators):
        return None
    return bootstrap_ci(numerators, denominators, confidence=settings.confidence,
                        n_resamples=settings.resamples, seed=settings.seed)


@dataclass(frozen=True)
class PairedVerdict:
    """One metric of B against A on the same images.

    Attributes:
        metric: the metric's name.
        baseline: label of A (e.g. ``"v1"``); ``candidate``: label of B.
        rate_a: A's rate on the paired images; ``rate_b``: B's.
        diff: ``rate_b - rate_a`` with its paired bootstrap interval.
        mcnemar: McNemar's test on the per-image yes/no values (None for non-binary metrics).
        n_images: images paired (those where the metric is defined for both).
    """

    metric: str
    baseline: str
    candidate: str
    rate_a: float
    rate_b: float
    diff: RateCI
    mcnemar: McNemarResult | None
    n_images: int

    def line(self, percent: bool = False) -> str:
        """``hallucination_per_description 0.42 -> 0.18, diff -0.24 (95% CI -0.31..-0.17),
        McNemar p=0.0021 (n=500)``."""
        ci = self.diff

        def f(value: float, signed: bool = False) -> str:
            return format_rate(value, percent, signed)

        text = (f"{self.metric} {f(self.rate_a)} -> {f(self.rate_b)}, diff {f(ci.estimate, True)} "
                f"({ci.confidence:.0%} CI {f(ci.low, True)}..{f(ci.high, True)})")
        if self.mcnemar is not None:
            text += f", McNemar p={format_p(self.mcnemar.p_value)}"
        return f"{text} (n={self.n_images})"


def paired_verdict(
    metric: str, baseline: tuple[str, Arrays], candidate: tuple[str, Arrays], binary: bool,
    settings: BootstrapSettings = DEFAULT_BOOTSTRAP,
) -> PairedVerdict | None:
    """B against A for one metric; the arrays must be aligned image by image.

    Args:
        metric: the metric's name (shown in the verdict).
        baseline: (label, arrays) of A.
        candidate: (label, arrays) of B.
        binary: the metric is one yes/no per image (numerator 0 or 1, denominator 1): adds
            McNemar's test on the per-image values.
        settings: bootstrap settings.

    Returns:
        The verdict, or None when a rate is undefined on the paired images.

    Raises:
        ValueError: the arrays of A and B differ in length (not paired).

    Example:
        >>> v = paired_verdict("count_wrong", ("v1", ([1, 1, 1, 0], [1, 1, 1, 1])),
        ...                    ("v2", ([0, 0, 1, 0], [1, 1, 1, 1])), binary=True)
        >>> (v.rate_a, v.rate_b, v.diff.estimate, v.mcnemar.b, v.mcnemar.c)
        (0.75, 0.25, -0.5, 2, 0)
    """
    (label_a, (num_a, den_a)), (label_b, (num_b, den_b)) = baseline, candidate
    if len(num_a) != len(num_b):
        raise ValueError(f"{metric}: {label_a} has {len(num_a)} images, {label_b} {len(num_b)}")
    if not num_a or not sum(den_a) or not sum(den_b):
        return None
    diff = paired_bootstrap_diff_ci(num_a, num_b, den_a, den_b, confidence=settings.confidence,
                                    n_resamples=settings.resamples, seed=settings.seed)
    test = mcnemar([v > 0 for v in num_a], [v > 0 for v in num_b]) if binary else None
    return PairedVerdict(metric, label_a, label_b, sum(num_a) / sum(den_a),
                         sum(num_b) / sum(den_b), diff, test, len(num_a))


def aligned(values: Mapping[str, tuple[float, float] | None],
            other: Mapping[str, tuple[float, float] | None]) -> tuple[Arrays, Arrays]:
    """Per-image (numerator, denominator) of two versions, keyed by image id, as arrays over
    the images where both are defined, in image-id order.

    Example:
        >>> aligned({"a": (1, 1), "b": (0, 1), "c": None}, {"b": (1, 1), "c": (1, 1)})
        (([0], [1]), ([1], [1]))
    """
    common = sorted(k for k in values.keys() & other.keys()
                    if values[k] is not None and other[k] is not None)
    a = [values[k] for k in common]
    b = [other[k] for k in common]
    return ([p[0] for p in a], [p[1] for p in a]), ([p[0] for p in b], [p[1] for p in b])


def ci_metrics(key: str, ci: RateCI) -> dict[str, float]:
    """A rate and its interval as MLflow metrics: ``key``, ``key.ci_low``, ``key.ci_high``."""
    return {key: ci.estimate, f"{key}.ci_low": ci.low, f"{key}.ci_high": ci.high}


def verdict_metrics(prefix: str, verdicts: Sequence[PairedVerdict]) -> dict[str, float]:
    """Paired verdicts as MLflow metrics: ``<prefix>.<metric>.diff`` with ``.diff_ci_low``,
    ``.diff_ci_high`` and, for yes/no metrics, ``.mcnemar_p``.

    Example:
        >>> v = paired_verdict("x", ("a", ([1, 1], [1, 1])), ("b", ([0, 1], [1, 1])), True)
        >>> sorted(verdict_metrics("b_vs_a", [v]))
        ['b_vs_a.x.diff', 'b_vs_a.x.diff_ci_high', 'b_vs_a.x.diff_ci_low', 'b_vs_a.x.mcnemar_p']
    """
    metrics: dict[str, float] = {}
    for v in verdicts:
        key = f"{prefix}.{v.metric}"
        metrics.update({f"{key}.diff": v.diff.estimate, f"{key}.diff_ci_low": v.diff.low,
                        f"{key}.diff_ci_high": v.diff.high})
        if v.mcnemar is not None:
            metrics[f"{key}.mcnemar_p"] = v.mcnemar.p_value
    return metrics


# --- guardrail flags (candid compare) ---------------------------------------------------------
ANY_FLAG = "any_flag"


def flag_values(rows: Mapping[str, Collection[str] | None], flag: str
                ) -> dict[str, tuple[float, float] | None]:
    """Per image: (1, 1) when its output carries ``flag`` (``ANY_FLAG``: any flag), (0, 1)
    when it does not, None when the image has no output (an error row is not flagged, and is
    not in the denominator, as ``udfs.outputs.tally.Tally.flag_rates``)."""
    def one(flags: Collection[str] | None) -> tuple[float, float] | None:
        if flags is None:
            return None
        hit = bool(flags) if flag == ANY_FLAG else flag in flags
        return (1.0 if hit else 0.0, 1.0)

    return {image: one(flags) for image, flags in rows.items()}


def flag_names(versions: Mapping[str, Mapping[str, Collection[str] | None]]) -> list[str]:
    """Every flag seen in any version, sorted, then ``ANY_FLAG``."""
    seen = {f for rows in versions.values() for flags in rows.values() for f in flags or ()}
    return [*sorted(seen), ANY_FLAG]


def flag_rate_cis(rows: Mapping[str, Collection[str] | None], flags: Sequence[str],
                  settings: BootstrapSettings = DEFAULT_BOOTSTRAP) -> dict[str, RateCI]:
    """Each flag's rate over the ok rows of one version, with its interval."""
    out = {}
    for flag in flags:
        values = [v for v in flag_values(rows, flag).values() if v is not None]
        ci = rate_ci(([v[0] for v in values], [v[1] for v in values]), settings)
        if ci is not None:
            out[flag] = ci
    return out


def flag_verdicts(
    baseline: tuple[str, Mapping[str, Collection[str] | None]],
    candidate: tuple[str, Mapping[str, Collection[str] | None]],
    flags: Sequence[str], settings: BootstrapSettings = DEFAULT_BOOTSTRAP,
) -> list[PairedVerdict]:
    """B against A for each flag, on the images both described successfully."""
    (label_a, rows_a), (label_b, rows_b) = baseline, candidate
    verdicts = []
    for flag in flags:
        a, b = aligned(flag_values(rows_a, flag), flag_values(rows_b, flag))
        verdict = paired_verdict(flag, (label_a, a), (label_b, b), binary=True, settings=settings)
        if verdict is not None:
            verdicts.append(verdict)
    return verdicts


# --- formatting -------------------------------------------------------------------------------
def format_p(p: float) -> str:
    """A p-value with two significant digits, ``<0.0001`` below that.

    Example:
        >>> format_p(0.0390625), format_p(1.0), format_p(3e-9)
        ('0.039', '1', '<0.0001')
    """
    return f"<{SMALLEST_SHOWN_P:g}" if p < SMALLEST_SHOWN_P else f"{p:.2g}"


def format_ci(ci: RateCI, percent: bool = False) -> str:
    """``0.42 (95% CI 0.30..0.55)``."""
    low, high = format_rate(ci.low, percent), format_rate(ci.high, percent)
    return f"{format_rate(ci.estimate, percent)} ({ci.confidence:.0%} CI {low}..{high})"


def format_rate(value: float, percent: bool = False, signed: bool = False) -> str:
    """A rate as ``0.42`` (``42%`` with ``percent``), with a sign for differences.

    Example:
        >>> format_rate(0.4166), format_rate(-0.24, signed=True), format_rate(0.1, percent=True)
        ('0.42', '-0.24', '10%')
    """
    if percent:
        return f"{value:+.0%}" if signed else f"{value:.0%}"
    return f"{value:+.2f}" if signed else f"{value:.2f}"
