"""A/B verdicts: each rate with its confidence interval, and for two versions on the same
images a paired difference with its interval, McNemar's exact test, and the smallest difference
the sample could detect.

This composes ``udfs.evaluation.intervals`` (and ``udfs.evaluation.power``) for the places that
judge prompt versions: ``candid eval score`` (grounding rates against known truth), ``candid
compare`` (guardrail flag rates on a real sample) and ``candid audit`` (self-check rates). A
rate is always ``sum(numerators) / sum(denominators)`` over images. Which interval it gets
follows from the data: one yes/no per image (numerators 0 or 1 over denominators of 1) is a
share of images (Clopper-Pearson; paired: Newcombe, McNemar); anything else is a rate over
units nested in images (the cluster ratio interval; paired: square-and-add).

Conventions: in a pair, A is the baseline and B the candidate; a difference is ``B - A``
(negative: B's rate is lower).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from udfs.evaluation.intervals import (
    DEFAULT_CONFIDENCE,
    McNemarResult,
    RateCI,
    mcnemar,
    paired_ratio_difference,
    paired_share_difference,
    ratio_interval,
    share_interval,
)
from udfs.evaluation.power import (
    DEFAULT_ALPHA,
    DEFAULT_POWER,
    OBSERVED,
    PowerAnswer,
    detectable_difference,
    images_needed,
)

# Below this a p-value is printed as "<0.0001": more digits only suggest false precision.
SMALLEST_SHOWN_P = 1e-4
# Per-image values of one metric: (numerators, denominators), aligned by image.
Arrays = tuple[Sequence[float], Sequence[float]]


@dataclass(frozen=True)
class IntervalSettings:
    """How intervals and sample sizes are computed.

    Attributes:
        confidence: the intervals' level.
        alpha: the two-sided test level of the sample-size figures.
        power: the power of the sample-size figures.
        detect: a difference to detect: the images needed are reported (None: not asked).
    """

    confidence: float = DEFAULT_CONFIDENCE
    alpha: float = DEFAULT_ALPHA
    power: float = DEFAULT_POWER
    detect: float | None = None


DEFAULT_SETTINGS = IntervalSettings()


def is_share(arrays: Arrays) -> bool:
    """One yes/no per image: numerators 0 or 1, denominators 1.

    Example:
        >>> is_share(([1, 0], [1, 1])), is_share(([1, 2], [2, 3])), is_share(([0.5], [1]))
        (True, False, False)
    """
    numerators, denominators = arrays
    return all(d == 1 for d in denominators) and all(v in (0, 1) for v in numerators)


def rate_ci(arrays: Arrays, settings: IntervalSettings = DEFAULT_SETTINGS) -> RateCI | None:
    """The rate of ``arrays`` with its interval, over the images where it is defined (a
    denominator above 0: a rate per stated count is over the rows that state one); None when
    it is defined nowhere, so a caller never reports a made-up 0.

    Example:
        >>> rate_ci(([1, 0, 1, 1], [1, 1, 1, 1])).method
        'clopper_pearson'
        >>> rate_ci(([], [])) is None
        True
    """
    kept = [(x, d) for x, d in zip(*arrays, strict=True) if d > 0]  # images it is defined on
    if not kept:
        return None
    numerators, denominators = [x for x, _ in kept], [d for _, d in kept]
    if is_share((numerators, denominators)):
        return share_interval(int(sum(numerators)), len(numerators), settings.confidence)
    return ratio_interval(numerators, denominators, settings.confidence)


@dataclass(frozen=True)
class PairedVerdict:
    """One metric of B against A on the same images.

    Attributes:
        metric: the metric's name.
        baseline: label of A (e.g. ``"v1"``); ``candidate``: label of B.
        rate_a: A's rate on the paired images; ``rate_b``: B's.
        diff: ``rate_b - rate_a`` with its paired interval.
        mcnemar: McNemar's exact test (None unless the metric is one yes/no per image).
        n_images: images paired (those where the metric is defined for both).
        units: what the denominators count (``images`` for a share of images).
        units_a: A's denominator total on the paired images; ``units_b``: B's.
        detectable: the smallest difference these images detect (yes/no metrics only).
        needed: images needed for ``IntervalSettings.detect`` (yes/no metrics, when asked).
    """

    metric: str
    baseline: str
    candidate: str
    rate_a: float
    rate_b: float
    diff: RateCI
    mcnemar: McNemarResult | None
    n_images: int
    units: str = "images"
    units_a: float = 0.0
    units_b: float = 0.0
    detectable: PowerAnswer | None = None
    needed: PowerAnswer | None = None

    def line(self, percent: bool = False) -> str:
        """``hallucination_per_description 0.42 -> 0.18, diff -0.24 (95% CI -0.31..-0.17),
        McNemar exact p=0.0021 (b=30, c=6; 500 images)``."""
        ci = self.diff

        def f(value: float, signed: bool = False) -> str:
            return format_rate(value, percent, signed)

        text = (f"{self.metric} {f(self.rate_a)} -> {f(self.rate_b)}, diff {f(ci.estimate, True)} "
                f"({ci.confidence:.0%} CI {f(ci.low, True)}..{f(ci.high, True)})")
        if self.mcnemar is not None:
            p = format_p(self.mcnemar.p_value)
            return (f"{text}, McNemar exact p{'' if p.startswith('<') else '='}{p} "
                    f"(b={self.mcnemar.b}, c={self.mcnemar.c}; {self.n_images} images)")
        return (f"{text} ({self.n_images} images; {self.units_a:g} and {self.units_b:g} "
                f"{self.units})")


def paired_verdict(
    metric: str, baseline: tuple[str, Arrays], candidate: tuple[str, Arrays],
    settings: IntervalSettings = DEFAULT_SETTINGS, units: str = "images",
) -> PairedVerdict | None:
    """B against A for one metric; the arrays must be aligned image by image. A yes/no metric
    (both sides ``is_share``) gets Newcombe's interval, McNemar's exact test and the sample-size
    figures; any other the square-and-add interval of two ratio rates.

    Returns:
        The verdict, or None when a rate is undefined on the paired images.

    Raises:
        ValueError: the arrays of A and B differ in length (not paired).

    Example:
        >>> v = paired_verdict("count_wrong", ("v1", ([1, 1, 1, 0], [1, 1, 1, 1])),
        ...                    ("v2", ([0, 0, 1, 0], [1, 1, 1, 1])))
        >>> (v.rate_a, v.rate_b, v.diff.estimate, v.mcnemar.b, v.mcnemar.c)
        (0.75, 0.25, -0.5, 2, 0)
    """
    (label_a, (num_a, den_a)), (label_b, (num_b, den_b)) = baseline, candidate
    if len(num_a) != len(num_b):
        raise ValueError(f"{metric}: {label_a} has {len(num_a)} images, {label_b} {len(num_b)}")
    if not num_a or not sum(den_a) or not sum(den_b):
        return None
    rates = (sum(num_a) / sum(den_a), sum(num_b) / sum(den_b))
    totals = (float(sum(den_a)), float(sum(den_b)))
    if not (is_share((num_a, den_a)) and is_share((num_b, den_b))):
        diff = paired_ratio_difference(num_a, den_a, num_b, den_b, settings.confidence)
        return PairedVerdict(metric, label_a, label_b, *rates, diff, None, len(num_a), units,
                             *totals)
    yes_a, yes_b = [v > 0 for v in num_a], [v > 0 for v in num_b]
    test = mcnemar(yes_a, yes_b)
    return PairedVerdict(
        metric, label_a, label_b, *rates,
        paired_share_difference(yes_a, yes_b, settings.confidence), test, len(num_a),
        "images", *totals, *power_answers(len(num_a), rates[0], test, settings),
    )


def power_answers(images: int, rate: float, test: McNemarResult | None,
                  settings: IntervalSettings) -> tuple[PowerAnswer, PowerAnswer | None]:
    """The detectable difference and (when asked) the images needed, from the observed
    discordance of a pair (``test``) or, for one version, at its rate alone."""
    discordance = (test.b + test.c) / images if test is not None else None
    found = detectable_difference(images, rate, discordance, alpha=settings.alpha,
                                  power=settings.power)
    needed = None if settings.detect is None else images_needed(
        settings.detect, rate, discordance, alpha=settings.alpha, power=settings.power)
    return found, needed


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
    ``.diff_ci_high`` and, for yes/no metrics, ``.mcnemar_p``, ``.detectable_diff`` and
    (when asked) ``.images_needed``.

    Example:
        >>> v = paired_verdict("x", ("a", ([1, 1], [1, 1])), ("b", ([0, 1], [1, 1])))
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
        if v.detectable is not None and v.detectable.value is not None:
            metrics[f"{key}.detectable_diff"] = v.detectable.value
        if v.needed is not None and v.needed.value is not None:
            metrics[f"{key}.images_needed"] = v.needed.value
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
                  settings: IntervalSettings = DEFAULT_SETTINGS) -> dict[str, RateCI]:
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
    flags: Sequence[str], settings: IntervalSettings = DEFAULT_SETTINGS,
) -> list[PairedVerdict]:
    """B against A for each flag, on the images both described successfully."""
    (label_a, rows_a), (label_b, rows_b) = baseline, candidate
    verdicts = []
    for flag in flags:
        a, b = aligned(flag_values(rows_a, flag), flag_values(rows_b, flag))
        verdict = paired_verdict(flag, (label_a, a), (label_b, b), settings)
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


def format_ci(ci: RateCI, percent: bool = False, units: str = "") -> str:
    """A rate, what it counts, and its interval: a rate is never shown without the counts
    behind it, so ``0 of 20`` cannot read as a certain zero.

    Example:
        >>> from udfs.evaluation.intervals import ratio_interval, share_interval
        >>> format_ci(share_interval(0, 20))
        '0.00 (0 of 20; 95% CI 0.00..0.17)'
        >>> format_ci(ratio_interval([0, 1, 2], [3, 3, 4]), units="mentions")
        '0.30 (3 of 10 mentions in 3 images; 95% CI 0.00..0.95)'
    """
    low, high = format_rate(ci.low, percent), format_rate(ci.high, percent)
    bounds = f"{ci.confidence:.0%} CI {low}..{high}"
    if ci.counted and ci.total == ci.n_items and not units:
        counts = f"{ci.events:g} of {ci.n_items}"
    elif ci.counted:
        unit = f" {units}" if units else ""
        counts = f"{ci.events:g} of {ci.total:g}{unit} in {ci.n_items} images"
    else:
        counts = f"{ci.n_items} images"
    return f"{format_rate(ci.estimate, percent)} ({counts}; {bounds})"


def format_rate(value: float, percent: bool = False, signed: bool = False) -> str:
    """A rate as ``0.42`` (``42%`` with ``percent``), with a sign for differences.

    Example:
        >>> format_rate(0.4166), format_rate(-0.24, signed=True), format_rate(0.1, percent=True)
        ('0.42', '-0.24', '10%')
    """
    if percent:
        return f"{value:+.0%}" if signed else f"{value:.0%}"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def format_power(answer: PowerAnswer | None, detect: float | None = None,
                 needed: PowerAnswer | None = None, percent: bool = False) -> str:
    """The sample-size figures of a verdict in words.

    Example:
        >>> from udfs.evaluation.power import detectable_difference, images_needed
        >>> format_power(detectable_difference(200, 0.1, 0.08), 0.05,
        ...              images_needed(0.05, 0.1, 0.08))
        'detectable difference 0.06 (observed discordance 0.08); 249 images to detect 0.05'
    """
    if answer is None:
        return ""
    if answer.value is None:
        text = "no difference detectable with these images"
    else:
        text = (f"detectable difference {format_rate(answer.value, percent)} "
                f"({answer.basis}{_discordance(answer, percent)})")
    if detect is not None and needed is not None:
        wanted = format_rate(detect, percent)
        text += (f"; {needed.value} images to detect {wanted}" if needed.value is not None
                 else f"; a difference of {wanted} is not possible at this rate")
    return text


def _discordance(answer: PowerAnswer, percent: bool) -> str:
    return f" {format_rate(answer.discordance, percent)}" if answer.basis == OBSERVED else ""
