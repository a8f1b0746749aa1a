"""Grounding: what a description claims, in a fixed vocabulary, scored against known truth.
The self-check audit (yes/no probes built from the same claims) is in ``udfs.evaluation.selfcheck``.

Vocabulary. Every word is matched case-insensitively as a whole word, in singular and plural
(``leaf``/``leaves``); multi-word forms also match with a hyphen (``lamp-shade``), and the longest
form wins (``desk lamp`` is a lamp, not a desk). ``OBJECT_SYNONYMS`` and ``FEATURE_SYNONYMS`` map
surface words to the items of ``udfs.evaluation.scenes`` (object types and their parts);
``COLOR_SYNONYMS`` maps colour words to ``udfs.evaluation.scenes.PALETTE`` names. Words left out on
purpose: ``light`` (a colour shade or a lamp), ``seat``, ``back`` and ``arm`` (parts of too many
things), ``plant`` (not always a flower), ``rose`` (a flower or a colour), ``shade of`` (a tone,
not a lampshade).

Claims (``extract_claims``). Text is cut into clauses at punctuation and at ``and``, ``but``,
``with``, ``while``, ``which``, ``however``, ``although``; never at ``or`` (so "no chimney or door"
negates both). Inside a clause, a negation (``no``, ``without``, ``lacks``, ``none``, ``nor``...)
turns every item after it into an abstention; an uncertainty cue (``not``, ``cannot``, ``n't``,
``unclear``, ``hidden``, ``hard to see``, ``too small``...) does the same to the items after it,
or, when none follows, to the nearest item before it ("the legs cannot be seen clearly").
Hedges ("possibly", "appears to have") stay claims: a hedged invented chimney is still invented.
A count is a number word (one to twelve, ``single``, ``a pair of``, ``dozen``) or a 1-3 digit
numeral followed within three words by an item ("four wooden legs"), or a hyphenated count
("four-legged", "5-petalled"). "one of", ranges ("three or four legs"), vague quantities
("several", "a few", "some", "many", "a couple of"), and an item under an uncertainty cue are
count abstentions for that item; a cue next to ``count``/``number``/``how many`` in a clause
that names no item ("it is impossible to count them") abstains for every item. "a mug" states
no count: the article is grammar, not a number.

Scoring (``score_claims``), CHAIR-style: a mentioned item is *supported* when the truth lists it
as present (the subject type counts as present), *hallucinated* when the truth lists it as
absent, a *scope item* when it belongs only to the distractor, and *unjudged* otherwise: a known
word the truth says nothing about is neither right nor wrong and stays out of every rate.
Abstained items are never hallucinations. A row violates scope when it claims the distractor's
type or a part drawn only on the distractor: scoped prompts say to ignore adjacent objects, so
naming one at all ("next to a car") breaks scope, and giving its parts to the subject ("a table
with wheels") is the failure the rule exists for; the two are not told apart. A colour is *wrong*
when it is drawn nowhere in the scene (``truth["scene_colors"]``, background white included).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

# --- vocabulary -------------------------------------------------------------------------------
# Object types (udfs.evaluation.scenes.SUBJECT_TYPES): generic and everyday names the models use
# for them.
OBJECT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "table": ("table", "desk", "tabletop", "workbench", "coffee table", "dining table"),
    "chair": ("chair", "armchair", "stool", "rocking chair", "office chair"),
    "flower": ("flower", "blossom", "bloom", "daisy", "tulip", "sunflower", "flowerhead"),
    "car": ("car", "automobile", "vehicle", "auto", "sedan", "hatchback", "truck", "van",
            "limousine", "suv", "jeep"),
    "house": ("house", "home", "building", "cottage", "cabin", "hut", "bungalow", "barn"),
    "mug": ("mug", "cup", "teacup", "tea cup", "coffee cup", "coffee mug", "tumbler"),
    "lamp": ("lamp", "desk lamp", "table lamp", "floor lamp", "lampstand", "lantern"),
}
# Parts and features drawn on some subjects (udfs.evaluation.scenes.ALL_FEATURES).
FEATURE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "leg": ("leg", "table leg", "chair leg"),
    "drawer": ("drawer",),
    "backrest": ("backrest", "back rest", "chair back", "back support"),
    "armrest": ("armrest", "arm rest"),
    "cushion": ("cushion", "pillow", "padding", "seat cushion", "seat pad"),
    "petal": ("petal",),
    "stem": ("stem", "stalk"),
    "leaf": ("leaf", "foliage"),
    "pot": ("pot", "flowerpot", "flower pot", "vase", "planter"),
    "wheel": ("wheel", "tire", "tyre"),
    "window": ("window", "windowpane", "pane", "windshield", "windscreen"),
    "headlight": ("headlight", "headlamp", "head light", "head lamp"),
    "door": ("door", "doorway", "front door", "entrance"),
    "chimney": ("chimney", "smokestack"),
    "roof": ("roof", "rooftop"),
    "handle": ("handle",),
    "stripe": ("stripe", "striped", "band", "banded"),
    "shade": ("shade", "lampshade", "lamp shade"),
    "bulb": ("bulb", "lightbulb", "light bulb"),
    "cord": ("cord", "cable", "wire", "power cord"),
}
# Colour words -> palette names (udfs.evaluation.scenes.PALETTE). "-ish" forms are listed, not
# derived.
COLOR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("red", "reddish", "crimson", "scarlet", "maroon", "burgundy", "ruby", "cherry"),
    "orange": ("orange", "orangish", "orangey", "amber", "tangerine"),
    "yellow": ("yellow", "yellowish", "golden", "gold", "mustard", "lemon"),
    "green": ("green", "greenish", "lime", "olive", "emerald"),
    "blue": ("blue", "bluish", "navy", "azure", "cobalt", "turquoise", "teal", "cyan"),
    "purple": ("purple", "purplish", "violet", "lavender", "lilac", "plum", "mauve"),
    "pink": ("pink", "pinkish", "magenta", "fuchsia", "salmon"),
    "brown": ("brown", "brownish", "tan", "beige", "chocolate", "chestnut"),
    "black": ("black", "blackish", "ebony"),
    "grey": ("grey", "gray", "greyish", "grayish", "silver", "charcoal"),
    "white": ("white", "whitish", "ivory", "cream"),
}
OBJECTS: frozenset[str] = frozenset(OBJECT_SYNONYMS)
FEATURES: frozenset[str] = frozenset(FEATURE_SYNONYMS)
COUNT_OUTCOMES = ("correct", "wrong", "abstain", "not_stated")

_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "single": 1, "pair of": 2, "dozen": 12,
}
# Hyphenated counts: "four-legged table" states four legs.
_COUNT_SUFFIXES = {"legged": "leg", "wheeled": "wheel", "petaled": "petal", "petalled": "petal",
                   "windowed": "window"}


def _forms(word: str) -> tuple[str, ...]:
    """A word and its plural (of the last word of a phrase)."""
    head, _, last = word.rpartition(" ")
    if last.endswith("f"):
        plural = last[:-1] + "ves"
    elif last.endswith(("s", "sh", "ch", "x")):
        plural = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        plural = last[:-1] + "ies"
    else:
        plural = last + "s"
    return (word, f"{head} {plural}".strip())


def _lexicon(table: Mapping[str, Sequence[str]], plurals: bool) -> dict[str, str]:
    """Surface form -> canonical name."""
    return {form: name for name, words in table.items() for w in words
            for form in (_forms(w) if plurals else (w,))}


def _pattern(forms: Iterable[str]) -> re.Pattern[str]:
    """Whole-word alternation, longest form first; a space in a form also matches a hyphen."""
    alts = [re.escape(f).replace(r"\ ", r"[\s-]+") for f in sorted(forms, key=len, reverse=True)]
    return re.compile(rf"\b(?:{'|'.join(alts)})\b")


_ITEM_WORDS = _lexicon({**OBJECT_SYNONYMS, **FEATURE_SYNONYMS}, plurals=True)
_COLOR_WORDS = _lexicon(COLOR_SYNONYMS, plurals=False)
_ITEM_RE = _pattern(_ITEM_WORDS)
_COLOR_RE = _pattern(_COLOR_WORDS)
_NUM = r"(?:\d{1,3}|" + "|".join(sorted(_NUMBERS, key=len, reverse=True)).replace(" ", r"\s+") + ")"
_NUM_RE = re.compile(rf"(?<![\w.,-]){_NUM}(?![\w-]|[.,]\d)")
_RANGE_RE = re.compile(rf"(?<![\w.,-]){_NUM}\s*(?:-|\u2013|to|or)\s*{_NUM}\b")
_HYPHEN_COUNT_RE = re.compile(rf"(?<![\w-])({_NUM})-({'|'.join(_COUNT_SUFFIXES)})\b")
_VAGUE_RE = re.compile(r"\b(?:several|few|some|many|multiple|numerous|various|couple\s+of|"
                       r"number\s+of|handful\s+of|lots\s+of|plenty\s+of)\b")
_CLAUSE_SPLIT = re.compile(r"[.;:!?()\n,]|\b(?:and|but|with|while|whereas|which|however|"
                           r"although|though)\b")
# Negations: only what follows them ("no chimney", "without a handle").
_NEGATION_RE = re.compile(r"\b(?:no|without|lacks?|lacking|none|neither|nor|never|whether)\b")
# Uncertainty: what follows them, else the nearest item before ("the legs are not visible").
_UNCERTAIN_RE = re.compile(
    r"\b(?:not|cannot|can\s+not|unable|unclear|uncertain|unsure|invisible|absent|missing|"
    r"hidden|obscured|indistinct|indiscernible)\b|n't\b"
    r"|\b(?:hard|difficult|impossible)\s+to\s+(?:see|tell|make\s+out|count|determine|discern|"
    r"distinguish|identify)\b"
    r"|\btoo\s+(?:small|blurry|blurred|dark|faint|low)\b"
)
_COUNT_WORD_RE = re.compile(r"\b(?:count|counted|counting|number|how\s+many)\b|\bcountless\b")


@dataclass(frozen=True)
class Claims:
    """What one description claims, in canonical vocabulary names.

    Attributes:
        items: objects and features stated as present.
        abstained: items named only under a negation or an uncertainty cue (or, in JSON mode,
            under ``not_visible``); never claims.
        colors: colour names stated (not under a cue).
        counts: item -> the first number stated for it.
        count_abstained: items whose count the description declines to give.
        generic_count_abstention: "it is impossible to count them" with no item named.
        subject: the first object named, used in probe questions; None if none.
        subject_count: JSON mode only: the ``count`` field when it is an integer.
        subject_count_uncertain: JSON mode only: ``count`` is ``"uncertain"``.
    """

    items: frozenset[str] = frozenset()
    abstained: frozenset[str] = frozenset()
    colors: frozenset[str] = frozenset()
    counts: Mapping[str, int] = field(default_factory=dict)
    count_abstained: frozenset[str] = frozenset()
    generic_count_abstention: bool = False
    subject: str | None = None
    subject_count: int | None = None
    subject_count_uncertain: bool = False


def _clauses(text: str) -> list[str]:
    """Lower-cased clauses of ``text`` (see the module docstring for the cut points)."""
    text = text.lower().replace("\u2019", "'")
    return [c for c in _CLAUSE_SPLIT.split(text) if c.strip()]


def _items_in(clause: str) -> list[tuple[int, int, str]]:
    """(start, end, item) of every vocabulary item, left to right ("shade of" is a tone).

    A hyphenated count ("four-legged") names its item too.
    """
    found = [(m.start(), m.end(), _COUNT_SUFFIXES[m.group(2)])
             for m in _HYPHEN_COUNT_RE.finditer(clause)]
    for m in _ITEM_RE.finditer(clause):
        item = _ITEM_WORDS[re.sub(r"[\s-]+", " ", m.group())]
        if item == "shade" and re.match(r"\s+of\b", clause[m.end():]):
            continue
        found.append((m.start(), m.end(), item))
    return sorted(found)


def _unclaimed(clause: str, items: list[tuple[int, int, str]]) -> set[int]:
    """Indices of ``items`` that a negation or an uncertainty cue in ``clause`` takes back."""
    out: set[int] = set()
    for m in _NEGATION_RE.finditer(clause):
        out |= {i for i, it in enumerate(items) if it[0] >= m.end()}
    for m in _UNCERTAIN_RE.finditer(clause):
        after = {i for i, it in enumerate(items) if it[0] >= m.end()}
        before = [i for i, it in enumerate(items) if it[1] <= m.start()]
        out |= after or set(before[-1:])
    return out


def _attached(clause: str, end: int, items: list[tuple[int, int, str]]) -> str | None:
    """The item a quantity ending at ``end`` counts: the next item within three words.

    "one of the legs" counts nothing; in a compound ("two table legs") the last noun counts.
    """
    nxt = [i for i, it in enumerate(items) if it[0] >= end]
    if not nxt:
        return None
    gap = clause[end:items[nxt[0]][0]]
    if not re.fullmatch(r"(?:[\s-]+[\w'-]+){0,3}[\s-]*", gap) or re.match(r"\s*of\b", gap):
        return None
    k = nxt[0]
    while k + 1 < len(items) and not clause[items[k][1]:items[k + 1][0]].strip(" -"):
        k += 1
    return items[k][2]


def _number(token: str) -> int:
    """The value of a number token matched by ``_NUM``."""
    token = re.sub(r"\s+", " ", token)
    return int(token) if token.isdigit() else _NUMBERS[token]


def _clause_counts(clause: str, items: list[tuple[int, int, str]], counts: dict[str, int],
                   vague: set[str]) -> None:
    """Record the stated counts and vague quantities of one claimed clause."""
    ranges = list(_RANGE_RE.finditer(clause))
    for m in ranges:
        if (item := _attached(clause, m.end(), items)) is not None:
            vague.add(item)
    claimed_at = {start for start, _, _ in items}
    for m in _HYPHEN_COUNT_RE.finditer(clause):
        if m.start() in claimed_at:
            counts.setdefault(_COUNT_SUFFIXES[m.group(2)], _number(m.group(1)))
    for m in _NUM_RE.finditer(clause):
        if any(r.start() <= m.start() < r.end() for r in ranges):
            continue
        if (item := _attached(clause, m.end(), items)) is not None:
            counts.setdefault(item, _number(m.group()))
    for m in _VAGUE_RE.finditer(clause):
        if (item := _attached(clause, m.end(), items)) is not None:
            vague.add(item)


def _clause_claims(clause: str) -> Claims:
    """The claims of one lower-cased clause."""
    found = _items_in(clause)
    unclaimed = _unclaimed(clause, found)
    claimed = [f for i, f in enumerate(found) if i not in unclaimed]
    first_cue = min((m.start() for r in (_NEGATION_RE, _UNCERTAIN_RE)
                     for m in r.finditer(clause)), default=len(clause))
    counts: dict[str, int] = {}
    taken_back = frozenset(found[i][2] for i in unclaimed)
    vague = set(taken_back)
    generic = "countless" in clause or (
        first_cue < len(clause) and not found and bool(_COUNT_WORD_RE.search(clause)))
    if not generic:
        _clause_counts(clause, claimed, counts, vague)
    return Claims(
        items=frozenset(it for _, _, it in claimed), abstained=taken_back,
        colors=frozenset(_COLOR_WORDS[m.group()] for m in _COLOR_RE.finditer(clause)
                         if m.start() < first_cue),
        counts=counts, count_abstained=frozenset(vague), generic_count_abstention=generic,
        subject=next((it for _, _, it in claimed if it in OBJECTS), None),
    )


def _merge(parts: Sequence[Claims]) -> Claims:
    """Claims of several pieces of one output, in order: a claim anywhere is a claim (it
    overrides an abstention elsewhere), the first number stated for an item counts."""
    items = frozenset().union(*(p.items for p in parts))
    counts: dict[str, int] = {}
    for p in parts:
        counts.update({k: v for k, v in p.counts.items() if k not in counts})
    return Claims(
        items=items, abstained=frozenset().union(*(p.abstained for p in parts)) - items,
        colors=frozenset().union(*(p.colors for p in parts)), counts=counts,
        count_abstained=frozenset().union(*(p.count_abstained for p in parts)) - set(counts),
        generic_count_abstention=any(p.generic_count_abstention for p in parts),
        subject=next((p.subject for p in parts if p.subject), None),
    )


def extract_claims(text: str | None) -> Claims:
    """The claims of a free-text description (rules in the module docstring).

    Example:
        >>> c = extract_claims("A red table with four legs. There is no drawer.")
        >>> sorted(c.items), sorted(c.abstained), dict(c.counts), sorted(c.colors)
        (['leg', 'table'], ['drawer'], {'leg': 4}, ['red'])
    """
    return _merge([_clause_claims(c) for c in _clauses(text or "")])


def _strings(value: Any) -> list[str]:
    """The strings of a JSON field that should be a list of strings (others are dropped)."""
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def extract_claims_json(value: Mapping[str, Any] | None) -> Claims:
    """The claims of a JSON-mode (v3 schema) output, read from its fields directly.

    ``subject`` and ``visible_features`` are read like text (items, counts, colours); ``colors``
    gives colours unless it is ``"not_visible"``; every item named under ``not_visible`` is an
    abstention (never a claim, never a hallucination) and a count abstention; an integer
    ``count`` is the number of subjects and ``"uncertain"`` abstains from it. An output that did
    not parse (None, not an object) claims nothing.
    """
    if not isinstance(value, Mapping):
        return Claims()
    parts = [extract_claims(s) for s in
             _strings(value.get("subject")) + _strings(value.get("visible_features"))]
    hidden = frozenset(it for s in _strings(value.get("not_visible"))
                       for _, _, it in _items_in(s.lower()))
    parts.append(Claims(abstained=hidden, count_abstained=hidden))
    if value.get("colors") != "not_visible":
        parts += [Claims(colors=extract_claims(s).colors) for s in _strings(value.get("colors"))]
    count = value.get("count")
    return replace(
        _merge(parts),
        subject_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        subject_count_uncertain=count == "uncertain",
    )


# --- scoring ----------------------------------------------------------------------------------
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


def score_text(text: str | None, truth: Mapping[str, Any]) -> RowScore:
    """Score a free-text description against truth."""
    return score_claims(extract_claims(text), truth)


def score_json(value: Mapping[str, Any] | None, truth: Mapping[str, Any]) -> RowScore:
    """Score a parsed JSON-mode output (None when it did not parse) against truth."""
    return score_claims(extract_claims_json(value), truth)


# --- aggregation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rate:
    """A rate as numerator / denominator, so groups can be summed and CIs bootstrapped."""

    numerator: float
    denominator: float

    @property
    def value(self) -> float | None:
        """The rate, or None when the denominator is 0 (undefined, not zero)."""
        return self.numerator / self.denominator if self.denominator else None


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


@dataclass(frozen=True)
class GroundingSummary:
    """The rates of a group of rows (``ROW_METRICS`` names)."""

    n_rows: int
    rates: dict[str, Rate]

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """Defined rates as ``{prefix + name: value}`` (for MLflow), plus ``n_rows``."""
        out = {f"{prefix}{k}": r.value for k, r in self.rates.items() if r.value is not None}
        return {**out, f"{prefix}n_rows": float(self.n_rows)}


def metric_arrays(scores: Sequence[RowScore], name: str) -> tuple[list[float], list[float]]:
    """(numerators, denominators) of metric ``name`` over the rows where it is defined.

    Whether a row is defined depends on its truth only, so two prompt versions scored on the
    same images keep the same rows, aligned: ready for a paired bootstrap.
    """
    pairs = [p for p in map(ROW_METRICS[name], scores) if p is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def aggregate(scores: Iterable[RowScore]) -> GroundingSummary:
    """Every ``ROW_METRICS`` rate over ``scores``: sums of numerators over sums of denominators."""
    rows = list(scores)
    rates = {}
    for name in ROW_METRICS:
        nums, dens = metric_arrays(rows, name)
        rates[name] = Rate(float(sum(nums)), float(sum(dens)))
    return GroundingSummary(n_rows=len(rows), rates=rates)


def aggregate_groups(rows: Iterable[tuple[Hashable, RowScore]]) -> dict[Hashable, GroundingSummary]:
    """``aggregate`` per group key (e.g. ``(prompt_version, model)``), keys in first-seen order."""
    groups: dict[Hashable, list[RowScore]] = {}
    for key, score in rows:
        groups.setdefault(key, []).append(score)
    return {key: aggregate(scores) for key, scores in groups.items()}
