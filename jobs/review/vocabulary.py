"""The verdicts a reviewer gives an output on the review page (``candid review --label``), in
the order a reviewer should try them: when several apply, the first one that applies is the
verdict (an unreadable output cannot be judged further; an invented feature is the error
Candid exists to catch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """One verdict: its stable id (stored in the labels table), the words on its button, what
    it means, and whether it is an error of the output."""

    id: str
    label: str
    meaning: str
    error: bool


VERDICTS: tuple[Verdict, ...] = (
    Verdict("correct", "correct", "Everything the output states is visible in the image and "
            "within the prompt's scope.", error=False),
    Verdict("unreadable", "unreadable", "The output cannot be judged: garbled, looping, in "
            "another language, cut off or empty.", error=True),
    Verdict("invented_feature", "invented feature", "The output names an object, part, colour "
            "or property that the image does not show (a hallucination).", error=True),
    Verdict("wrong_count", "wrong count", "The output states a number of items that differs "
            "from what the image shows.", error=True),
    Verdict("out_of_scope", "out of scope", "The output describes what the prompt excludes: "
            "the background, neighbouring or cut-off objects, or guesses (brand, material, "
            "purpose).", error=True),
)
VERDICT_IDS: tuple[str, ...] = tuple(v.id for v in VERDICTS)
ERROR_KINDS: tuple[str, ...] = tuple(v.id for v in VERDICTS if v.error)
# The verdict that a self-check audit and a confidence score try to predict.
HALLUCINATION = "invented_feature"
CORRECT = "correct"
