"""Grounding: the claims of a description (``udfs.evaluation.claims``) scored against a scene's
known truth, and the per-row metrics the eval rates are built from. The self-check audit (yes/no
probes built from the same claims) is in ``udfs.evaluation.selfcheck``.

Scoring (``score_claims``), CHAIR-style: a mentioned item is *supported* when the truth lists it
as present (the subject type counts as present), *hallucinated* when the truth lists it as
absent, a *scope item* when it belongs only to the distractor, and *unjudged* otherwise: a known
word the truth says nothing about is neither right nor wrong and stays out of every rate.
Abstained items are never hallucinations. A row violates scope when it claims the distractor's
type or a part drawn only on the distractor: scoped prompts say to ignore adjacent objects, so
naming one at all ("next to a car") breaks scope, and giving its parts to the subject ("a table
with wheels") is the failure the rule exists for; the two are not told apart. A colour is *wrong*
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from udfs.evaluation.claims import Claims

COUNT_OUTCOMES = ("correct", "wrong", "abstain", "not_stated")


@dataclass(frozen=True)
class RowScore:
    """One description scored against its scene's truth (sorted tuples of canonical names).

    Attributes:
        mentioned: items claimed present.
        supported: claimed and present (the subject type counts as present).
        hallucinated: claimed but absent by construction.
        scope_items: claimed items that belong only to the distractor.
        unjudged: claimed items the truth lists nowhere (out of every rate).
        abstained: items named only as not visible / uncertain / negated.
        covered: present features (not the subject type) that were claimed.
        n_present: number of present features.
        colors_mentioned: colours claimed.
        colors_wrong: claimed colours drawn nowhere in the scene.
        count_outcome: one of ``COUNT_OUTCOMES``.
        stated_count: the number compared with the truth, when one was stated.
        true_count: the truth count.
        has_distractor: whether the scene has a distractor (scope can be violated).
        subject_named: whether the subject type was claimed.
    """

    mentioned: tuple[str, ...]
    supported: tuple[str, ...]
    hallucinated: tuple[str, ...]
    scope_items: tuple[str, ...]
    unjudged: tuple[str, ...]
    abstained: tuple[str, ...]
    covered: tuple[str, ...]
    n_present: int
    colors_mentioned: tuple[str, ...]
    colors_wrong: tuple[str, ...]
    count_outcome: str
    stated_count: int | None
    true_count: int
    has_distractor: bool
    subject_named: bool

    @property
    def has_hallucination(self) -> bool:
        """At least one hallucinated item."""
        return bool(self.hallucinated)

    @property
    def scope_violation(self) -> bool:
        """The distractor (its type or a part drawn only on it) was described."""
        return bool(self.scope_items)

    @property
    def coverage(self) -> float | None:
        """Share of present features claimed; None when the truth has none."""
        return len(self.covered) / self.n_present if self.n_present else None

    def to_record(self) -> dict[str, Any]:
        """A JSON-safe dict (lists, not tuples) for a per-image table row."""
        rec = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}
        return {**rec, "has_hallucination": self.has_hallucination,
                "scope_violation": self.scope_violation, "coverage": self.coverage}


def _truth(truth: Mapping[str, Any], key: str) -> Any:
    """``truth[key]``, with an error that names the missing key."""
    try:
        return truth[key]
    except KeyError:
        raise KeyError(f"truth has no {key!r} (keys: {sorted(truth)})") from None


def _count_outcome(claims: Claims, truth: Mapping[str, Any]) -> tuple[str, int | None]:
    """(outcome, stated count) for the truth's counted item.

    In instance scenes a JSON ``count`` field, when present, is the answer; otherwise the number
    stated in the text for the counted item.
    """
    count_of = _truth(truth, "count_of")
    stated = claims.counts.get(count_of)
    abstained = count_of in claims.count_abstained or claims.generic_count_abstention
    json_count = claims.subject_count is not None or claims.subject_count_uncertain
    if _truth(truth, "count_kind") == "instances" and json_count:
        stated, abstained = claims.subject_count, claims.subject_count_uncertain
    if stated is not None:
        return ("correct" if stated == _truth(truth, "count") else "wrong"), stated
    return ("abstain" if abstained else "not_stated"), None


def score_claims(claims: Claims, truth: Mapping[str, Any]) -> RowScore:
    """Score ``claims`` against a scene's truth (``udfs.evaluation.scenes`` truth keys).

    Required keys: ``subject``, ``present``, ``absent``, ``count``, ``count_of``,
    ``count_kind``; optional: ``distractor_items`` (default none), ``scene_colors`` (default
    ``colors``, else no colour is judged wrong).
    """
    subject = _truth(truth, "subject")
    features = set(_truth(truth, "present"))
    present = features | {subject}
    absent = set(_truth(truth, "absent")) - present
    other = truth.get("distractor")
    distractor = (set(truth.get("distractor_items") or ()) | ({other} if other else set())
                  ) - present - absent
    drawn = truth.get("scene_colors", truth.get("colors"))
    outcome, stated = _count_outcome(claims, truth)
    m = claims.items
    return RowScore(
        mentioned=tuple(sorted(m)), supported=tuple(sorted(m & present)),
        hallucinated=tuple(sorted(m & absent)), scope_items=tuple(sorted(m & distractor)),
        unjudged=tuple(sorted(m - present - absent - distractor)),
        abstained=tuple(sorted(claims.abstained)), covered=tuple(sorted(m & features)),
        n_present=len(features), colors_mentioned=tuple(sorted(claims.colors)),
        colors_wrong=tuple(sorted(claims.colors - set(drawn))) if drawn is not None else (),
        count_outcome=outcome, stated_count=stated, true_count=int(_truth(truth, "count")),
        has_distractor=bool(other or truth.get("distractor_items")), subject_named=subject in m,
    )



def _flag(ok: bool) -> tuple[float, float]:
    return (1.0 if ok else 0.0, 1.0)


# Per-row (numerator, denominator) of each metric; None: the row does not enter that metric.
# Denominators: per mention = judged mentions (supported + hallucinated; scope and unjudged
# items are out); per description = every row; count rates = every row, so the four outcomes
# add up to 1 and abstaining is visible next to accuracy; count_accuracy_when_stated = rows that
# stated a count; scope = rows whose scene has a distractor; coverage = mean over rows with at
# least one present feature; colour error = colour mentions.
ROW_METRICS: dict[str, Callable[[RowScore], tuple[float, float] | None]] = {
    "hallucination_per_mention": lambda s: (
        float(len(s.hallucinated)), float(len(s.hallucinated) + len(s.supported))),
    "hallucination_per_description": lambda s: _flag(s.has_hallucination),
    **{f"count_{o}": (lambda s, o=o: _flag(s.count_outcome == o)) for o in COUNT_OUTCOMES},
    "count_accuracy_when_stated": lambda s: (
        float(s.count_outcome == "correct"), float(s.count_outcome in ("correct", "wrong"))),
    "scope_violation": lambda s: _flag(s.scope_violation) if s.has_distractor else None,
    "coverage": lambda s: None if s.coverage is None else (s.coverage, 1.0),
    "color_error": lambda s: (float(len(s.colors_wrong)), float(len(s.colors_mentioned))),
    "subject_named": lambda s: _flag(s.subject_named),
}
# Metrics that are one yes/no per row (denominator 1 where defined): inputs for McNemar.
BINARY_METRICS = ("hallucination_per_description", "count_correct", "count_wrong",
                  "count_abstain", "count_not_stated", "scope_violation", "subject_named")

