"""Self-check audit, POPE-style: ask the model yes/no questions about its own claims.

No truth is needed, so this works on real images: each concrete claim of a description (an
object or feature, a colour, a count; ``udfs.evaluation.claims``) becomes a
question asked with the image in a second pass, plus control questions about objects the
description does not claim. A claim the model does not confirm, and a control it says yes to, are
hallucination
proxies: a model that answers "yes" to everything confirms all claims and fails the controls.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from udfs.evaluation.ab import DEFAULT_SETTINGS, IntervalSettings, rate_ci
from udfs.evaluation.claims import Claims, extract_claims
from udfs.evaluation.intervals import RateCI
from udfs.evaluation.vocabulary import OBJECTS

# Items whose probe question is asked in the plural ("Are there legs ...").
PLURAL_PROBES = frozenset({"leg", "petal", "wheel", "window", "leaf"})
# The plural of an item in probe questions, where adding "s" is wrong.
_PLURALS = {"leaf": "leaves"}
# Every question ends so; POPE's wording, which keeps answers to one word.
PROBE_SUFFIX = "Answer yes or no."
_YES = frozenset({"yes", "yeah", "yep", "yup", "true", "correct", "affirmative"})
_NO = frozenset({"no", "nope", "false", "incorrect", "negative"})
# Hedged answers; "cannot see" is left out: "I cannot see a car, so no" is a no.
_UNSURE_ANSWER = re.compile(r"\b(?:no\s+idea|not\s+sure|unsure|unclear|uncertain|"
                            r"can(?:not|'t|\s+not)\s+(?:tell|say|determine)|"
                            r"don't\s+know|do\s+not\s+know)\b")


@dataclass(frozen=True)
class Probe:
    """One yes/no question about an image.

    Attributes:
        kind: ``"item"``, ``"color"``, ``"count"`` (claims of the description) or
            ``"control"`` (an object the description does not claim; expected "no").
        claim: a stable label such as ``"leg"``, ``"color:red"``, ``"count:leg=4"``,
            ``"control:car"``.
        question: the question to ask with the image.
        expected: the answer that confirms the description (``"yes"``; ``"no"`` for controls).
    """

    kind: str
    claim: str
    question: str
    expected: str


def _noun(item: str, plural: bool = False) -> str:
    """An item's name in questions, singular or plural."""
    return _PLURALS.get(item, item + "s") if plural else item


def _exists(item: str) -> str:
    """The existence question: "Is there a drawer ...?", or "Are there legs ...?" (plural items)."""
    if item in PLURAL_PROBES:
        return f"Are there {_noun(item, True)} in this image? {PROBE_SUFFIX}"
    article = "an" if item[0] in "aeiou" else "a"
    return f"Is there {article} {item} in this image? {PROBE_SUFFIX}"


def _count_question(item: str, n: int) -> str:
    """The count question: "Are there exactly 4 legs ...?", "Is there exactly one mug ...?"."""
    if n == 1:
        return f"Is there exactly one {item} in this image? {PROBE_SUFFIX}"
    return f"Are there exactly {n} {_noun(item, True)} in this image? {PROBE_SUFFIX}"


def probe_questions(claims: Claims | str, *, controls: Sequence[str] | None = None,
                    n_controls: int = 2, seed: int = 0, key: str = "") -> list[Probe]:
    """Yes/no questions that check each claim, then control questions.

    Args:
        claims: a free-text description, or its claims (``udfs.evaluation.claims``; for
            JSON-mode outputs ``extract_claims_json`` with the prompt's declaration).
        controls: items absent by construction (e.g. the objects of a scene's ``absent``) to
            ask about as controls; by default, the vocabulary's objects. Either way, items the
            description claims or abstains from are left out (on real images the default
            controls are only *probably* absent).
        n_controls: how many controls to ask.
        seed: with ``key`` (e.g. the image id), picks the controls deterministically.
        key: varies the controls from row to row.

    Returns:
        Probes in a fixed order: items, colours, counts (each sorted), controls.

    Example:
        >>> [p.question for p in probe_questions("A red mug.", n_controls=0)]
        ['Is there a mug in this image? Answer yes or no.', 'Is the mug red? Answer yes or no.']
    """
    if isinstance(claims, str):
        claims = extract_claims(claims)
    probes = [Probe("item", it, _exists(it), "yes") for it in sorted(claims.items)]
    thing = f"the {claims.subject}" if claims.subject else "the main object"
    probes += [Probe("color", f"color:{c}", f"Is {thing} {c}? {PROBE_SUFFIX}", "yes")
               for c in sorted(claims.colors)]
    probes += [Probe("count", f"count:{it}={n}", _count_question(it, n), "yes")
               for it, n in sorted(claims.counts.items())]
    pool = sorted((set(controls) if controls is not None else OBJECTS)
                  - claims.items - claims.abstained)
    random.Random(f"{seed}:{key}").shuffle(pool)
    probes += [Probe("control", f"control:{c}", _exists(c), "no") for c in pool[:n_controls]]
    return probes


def parse_yes_no(answer: str | None) -> str:
    """``"yes"``, ``"no"`` or ``"unclear"`` for a model's answer to a yes/no question.

    The first word decides ("No, there is none." is no; "No idea" is unclear); otherwise a
    hedge ("not sure", "cannot tell") makes it unclear; otherwise a lone yes-word or no-word
    anywhere decides ("There is no car." is no); answers with both or neither are unclear.
    """
    text = (answer or "").lower().replace("\u2019", "'")
    words = re.findall(r"[a-z']+", text)
    if words[:2] != ["no", "idea"] and words and words[0] in _YES | _NO:
        return "yes" if words[0] in _YES else "no"
    if _UNSURE_ANSWER.search(text):
        return "unclear"
    kinds = {"yes" for w in words if w in _YES} | {"no" for w in words if w in _NO}
    return kinds.pop() if len(kinds) == 1 else "unclear"


@dataclass(frozen=True)
class AuditResult:
    """The answers to one row's probes.

    Attributes:
        n_claims: claim probes asked (items, colours, counts).
        unconfirmed: claims not answered "yes" (denied or unclear): the hallucination proxy.
        denied: claims answered "no".
        n_controls: control probes asked.
        control_yes: controls answered "yes" (the model says yes to what it did not describe).
    """

    n_claims: int
    unconfirmed: tuple[str, ...]
    denied: tuple[str, ...]
    n_controls: int
    control_yes: tuple[str, ...]


def audit_answers(probes: Sequence[Probe], answers: Sequence[str | None]) -> AuditResult:
    """Compare raw answers (one per probe, same order) with the expected ones."""
    if len(probes) != len(answers):
        raise ValueError(f"answers: expected {len(probes)} (one per probe), got {len(answers)}")
    parsed = [parse_yes_no(a) for a in answers]
    claims = [(p, a) for p, a in zip(probes, parsed, strict=True) if p.kind != "control"]
    controls = [(p, a) for p, a in zip(probes, parsed, strict=True) if p.kind == "control"]
    return AuditResult(
        n_claims=len(claims),
        unconfirmed=tuple(p.claim for p, a in claims if a != "yes"),
        denied=tuple(p.claim for p, a in claims if a == "no"),
        n_controls=len(controls),
        control_yes=tuple(p.claim for p, a in controls if a == "yes"),
    )


# Per audited row: (numerator, denominator) of each audit rate; None: the row does not enter
# it (rows without claims are not in rows_with_unconfirmed). A run's rate is the sum over rows,
# its interval from ``udfs.evaluation.ab.rate_ci`` (claims nest in rows: a cluster ratio).
AUDIT_ROW_METRICS: dict[str, Callable[[AuditResult], tuple[float, float] | None]] = {
    "unconfirmed_per_claim": lambda r: (float(len(r.unconfirmed)), float(r.n_claims)),
    "denied_per_claim": lambda r: (float(len(r.denied)), float(r.n_claims)),
    "rows_with_unconfirmed": lambda r: (float(bool(r.unconfirmed)), 1.0) if r.n_claims else None,
    "control_yes_per_control": lambda r: (float(len(r.control_yes)), float(r.n_controls)),
}
# What each audit rate's denominator counts (in printed intervals).
AUDIT_UNITS = {"unconfirmed_per_claim": "claims", "denied_per_claim": "claims",
               "rows_with_unconfirmed": "", "control_yes_per_control": "controls"}


def audit_rate_cis(results: Sequence[AuditResult],
                   settings: IntervalSettings = DEFAULT_SETTINGS) -> dict[str, RateCI]:
    """Each defined audit rate over ``results`` (one per audited row) with its interval.

    Example:
        >>> rows = [AuditResult(2, ("leg",), (), 2, ()),
        ...         AuditResult(0, (), (), 2, ("control:car",))]
        >>> audit_rate_cis(rows)["control_yes_per_control"].estimate
        0.25
    """
    out = {}
    for name, metric in AUDIT_ROW_METRICS.items():
        pairs = [p for p in map(metric, results) if p is not None]
        ci = rate_ci(([p[0] for p in pairs], [p[1] for p in pairs]), settings)
        if ci is not None:
            out[name] = ci
    return out
