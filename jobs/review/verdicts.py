"""Review-page sections that judge prompt versions: each rate with its confidence interval per
version, and paired verdicts between versions (``candid eval score``, ``candid compare``).

Pure rendering, like ``jobs.review.page`` (which places these fragments after the run facts):
every value shown is HTML-escaped here, labels and model ids included, and nothing is fetched,
so the page keeps its Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from jobs.review.html_text import escape as _e
from jobs.review.html_text import words
from udfs.evaluation.ab import PairedVerdict, format_p
from udfs.evaluation.ab import format_rate as _n
from udfs.evaluation.intervals import RateCI

# What each grounding metric measures (tooltips and the docs say the same; see docs/EVAL.md).
GROUNDING_METRIC_NOTES: dict[str, str] = {
    "hallucination_per_mention": "Share of judged mentions (present or absent-by-construction "
    "items) that name something the scene does not have: invented features.",
    "hallucination_per_description": "Share of descriptions with at least one invented item.",
    "count_correct": "Share of descriptions stating the true count of the counted item.",
    "count_wrong": "Share of descriptions stating a wrong count: miscounts.",
    "count_abstain": "Share of descriptions that decline to count ('several', 'cannot count').",
    "count_not_stated": "Share of descriptions that say nothing about the count.",
    "count_accuracy_when_stated": "Correct counts among descriptions that state one.",
    "scope_violation": "Among scenes with a neighbouring object cut by the frame: share of "
    "descriptions that describe it (its type, or its parts given to the subject).",
    "coverage": "Mean share of the subject's present features that the description names.",
    "color_error": "Share of colour mentions naming a colour drawn nowhere in the scene.",
    "subject_named": "Share of descriptions naming the subject's type.",
    "json_invalid": "JSON-mode rows whose output did not validate (they claim nothing).",
    "auroc_mean_logprob": "How well a low mean token log-probability picks out descriptions "
    "with a hallucination (0.5: not at all, 1: perfectly). Meaningless for a random-weight "
    "test model.",
    "auroc_min_logprob": "How well a low minimum token log-probability picks out descriptions "
    "with a hallucination (0.5: not at all, 1: perfectly).",
    "guardrails_precision": "Descriptions with a hallucination among those a guardrail flagged.",
    "guardrails_recall": "Descriptions a guardrail flagged among those with a hallucination.",
}
# Metrics where a higher rate is the better one (all others: lower is better).
HIGHER_IS_BETTER = frozenset({"count_correct", "count_accuracy_when_stated", "coverage",
                              "subject_named", "auroc_mean_logprob", "auroc_min_logprob",
                              "guardrails_precision", "guardrails_recall"})


@dataclass(frozen=True)
class RatesColumn:
    """One version's rates: a column of the rates table.

    Attributes:
        label: short name (``v2``); ``detail``: what it is (prompt, model, images).
        rates: metric -> rate with interval; metrics a version does not define are left out.
    """

    label: str
    detail: str
    rates: Mapping[str, RateCI] = field(default_factory=dict)


def render_ab_section(
    title: str, columns: Sequence[RatesColumn], verdicts: Sequence[PairedVerdict], *,
    notes: Mapping[str, str] | None = None, higher_is_better: Collection[str] = HIGHER_IS_BETTER,
    percent: bool = False, intro: str = "",
) -> str:
    """A ``<section>`` with the rates table and the paired-verdicts table.

    Args:
        title: the section heading.
        columns: one per version, left to right.
        verdicts: paired verdicts (B against A), in display order.
        notes: metric -> explanation, shown as the metric's tooltip.
        higher_is_better: metrics where an increase is an improvement.
        percent: show rates as percentages (flag rates) instead of 0-1 numbers.
        intro: a sentence above the tables (plain text).

    Example:
        >>> "<script>" in render_ab_section("<script>", [], [])
        False
    """
    notes = notes or {}
    parts = [f'<section class="ab"><h2>{_e(title)}</h2>']
    if intro:
        parts.append(f'<p class="note">{_e(intro)}</p>')
    parts.append(_rates_table(columns, notes, percent))
    if verdicts:
        parts.append(_verdicts_table(verdicts, notes, higher_is_better, percent))
    parts.append("</section>")
    return "".join(parts)


def _rates_table(columns: Sequence[RatesColumn], notes: Mapping[str, str], percent: bool) -> str:
    metrics: list[str] = []
    for column in columns:
        metrics += [m for m in column.rates if m not in metrics]
    head = "".join(f'<th title="{_e(c.detail)}">{_e(c.label)}</th>' for c in columns)
    body = "".join(
        f'<tr class="ab-rate" data-metric="{_e(m)}"><td title="{_e(notes.get(m, ""))}">'
        f"{_e(words(m))}</td>{''.join(_rate_cell(c.rates.get(m), percent) for c in columns)}</tr>"
        for m in metrics
    )
    return (f'<table class="ab-rates"><thead><tr><th>rate (95% CI)</th>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _rate_cell(ci: RateCI | None, percent: bool) -> str:
    """The rate, the counts behind it (``0 of 20``: never a bare, certain-looking 0) and its
    interval."""
    if ci is None:
        return '<td class="num missing">n/a</td>'
    counts = (f"{ci.events:g} of {ci.total:g}" if ci.counted else f"{ci.n_items} images")
    return (f'<td class="num">{_e(_n(ci.estimate, percent))}<div class="meta">{_e(counts)}; '
            f"{_e(_n(ci.low, percent))}..{_e(_n(ci.high, percent))}</div></td>")


def _verdicts_table(verdicts: Sequence[PairedVerdict], notes: Mapping[str, str],
                    higher_is_better: Collection[str], percent: bool) -> str:
    rows = "".join(_verdict_row(v, notes, higher_is_better, percent) for v in verdicts)
    return (
        '<h2>Paired verdicts (same images)</h2><table class="ab-verdicts"><thead><tr>'
        "<th>comparison</th><th>metric</th><th>A</th><th>B</th><th>B - A</th><th>95% CI</th>"
        f"<th>McNemar p</th><th>images</th></tr></thead><tbody>{rows}</tbody></table>"
        '<p class="note">Green: B is better and the interval of the difference excludes 0; red: '
        "B is worse and it excludes 0. Metrics that are one yes/no per image: Newcombe's "
        "interval and McNemar's exact test; rates over mentions or claims (nested in images): "
        "the square-and-add interval of two cluster ratio intervals (docs/EVAL.md).</p>"
    )


def _verdict_row(v: PairedVerdict, notes: Mapping[str, str], higher_is_better: Collection[str],
                 percent: bool) -> str:
    css = _verdict_class(v, higher_is_better)
    p = format_p(v.mcnemar.p_value) if v.mcnemar is not None else ""
    cells = [f"{v.candidate} vs {v.baseline}", words(v.metric), _n(v.rate_a, percent),
             _n(v.rate_b, percent), _n(v.diff.estimate, percent, True),
             f"{_n(v.diff.low, percent, True)}..{_n(v.diff.high, percent, True)}", p,
             _images(v)]
    tip = notes.get(v.metric, "")
    tds = "".join(f'<td title="{_e(tip)}">{_e(c)}</td>' if i == 1 else f"<td>{_e(c)}</td>"
                  for i, c in enumerate(cells))
    return f'<tr class="ab-verdict {css}" data-metric="{_e(v.metric)}">{tds}</tr>'


def _images(v: PairedVerdict) -> str:
    """The paired images, and for a rate over nested units both versions' unit totals."""
    if v.mcnemar is not None or v.units == "images":
        return str(v.n_images)
    return f"{v.n_images} ({v.units_a:g} and {v.units_b:g} {v.units})"


def _verdict_class(v: PairedVerdict, higher_is_better: Collection[str]) -> str:
    """``verdict-better`` / ``verdict-worse`` when the interval excludes 0, else empty."""
    if v.diff.low <= 0 <= v.diff.high:
        return ""
    up = v.diff.estimate > 0
    return "verdict-better" if up == (v.metric in higher_is_better) else "verdict-worse"
