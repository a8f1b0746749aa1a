"""What a description claims, in the vocabulary of ``udfs.evaluation.vocabulary``: from free
text (``extract_claims``), or from a JSON-mode output by its prompt's declaration of which field
holds which kind of claim (``extract_claims_json``; ``udfs.prompts.CLAIM_KINDS``).

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

JSON outputs (``extract_claims_json``). Object and feature fields are read like text (items,
counts, colours), object fields first, so the subject is the first object an object field names;
colour fields give colours only; items named in an abstention field are abstentions (never
claims, never hallucinations) and count abstentions; a count field's integer is the number of
subjects, and a string there ("uncertain") abstains from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from udfs.evaluation.vocabulary import (
    CLAUSE_SPLIT,
    COLOR_RE,
    COLOR_WORDS,
    COUNT_SUFFIXES,
    COUNT_WORD_RE,
    HYPHEN_COUNT_RE,
    ITEM_RE,
    ITEM_WORDS,
    NEGATION_RE,
    NUM_RE,
    NUMBERS,
    OBJECTS,
    RANGE_RE,
    UNCERTAIN_RE,
    VAGUE_RE,
)


@dataclass(frozen=True)
class Claims:
    """What one description claims, in canonical vocabulary names.

    Attributes:
        items: objects and features stated as present.
        abstained: items named only under a negation or an uncertainty cue (or, in JSON mode,
            in an abstention field); never claims.
        colors: colour names stated (not under a cue).
        counts: item -> the first number stated for it.
        count_abstained: items whose count the description declines to give.
        generic_count_abstention: "it is impossible to count them" with no item named.
        subject: the first object named, used in probe questions; None if none.
        subject_count: JSON mode only: the count field when it is an integer.
        subject_count_uncertain: JSON mode only: the count field abstains (a string).
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
    return [c for c in CLAUSE_SPLIT.split(text) if c.strip()]


def _items_in(clause: str) -> list[tuple[int, int, str]]:
    """(start, end, item) of every vocabulary item, left to right ("shade of" is a tone).

    A hyphenated count ("four-legged") names its item too.
    """
    found = [(m.start(), m.end(), COUNT_SUFFIXES[m.group(2)])
             for m in HYPHEN_COUNT_RE.finditer(clause)]
    for m in ITEM_RE.finditer(clause):
        item = ITEM_WORDS[re.sub(r"[\s-]+", " ", m.group())]
        if item == "shade" and re.match(r"\s+of\b", clause[m.end():]):
            continue
        found.append((m.start(), m.end(), item))
    return sorted(found)


def _unclaimed(clause: str, items: list[tuple[int, int, str]]) -> set[int]:
    """Indices of ``items`` that a negation or an uncertainty cue in ``clause`` takes back."""
    out: set[int] = set()
    for m in NEGATION_RE.finditer(clause):
        out |= {i for i, it in enumerate(items) if it[0] >= m.end()}
    for m in UNCERTAIN_RE.finditer(clause):
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
    return int(token) if token.isdigit() else NUMBERS[token]


def _clause_counts(clause: str, items: list[tuple[int, int, str]], counts: dict[str, int],
                   vague: set[str]) -> None:
    """Record the stated counts and vague quantities of one claimed clause."""
    ranges = list(RANGE_RE.finditer(clause))
    for m in ranges:
        if (item := _attached(clause, m.end(), items)) is not None:
            vague.add(item)
    claimed_at = {start for start, _, _ in items}
    for m in HYPHEN_COUNT_RE.finditer(clause):
        if m.start() in claimed_at:
            counts.setdefault(COUNT_SUFFIXES[m.group(2)], _number(m.group(1)))
    for m in NUM_RE.finditer(clause):
        if any(r.start() <= m.start() < r.end() for r in ranges):
            continue
        if (item := _attached(clause, m.end(), items)) is not None:
            counts.setdefault(item, _number(m.group()))
    for m in VAGUE_RE.finditer(clause):
        if (item := _attached(clause, m.end(), items)) is not None:
            vague.add(item)


def _clause_claims(clause: str) -> Claims:
    """The claims of one lower-cased clause."""
    found = _items_in(clause)
    unclaimed = _unclaimed(clause, found)
    claimed = [f for i, f in enumerate(found) if i not in unclaimed]
    first_cue = min((m.start() for r in (NEGATION_RE, UNCERTAIN_RE)
                     for m in r.finditer(clause)), default=len(clause))
    counts: dict[str, int] = {}
    taken_back = frozenset(found[i][2] for i in unclaimed)
    vague = set(taken_back)
    generic = "countless" in clause or (
        first_cue < len(clause) and not found and bool(COUNT_WORD_RE.search(clause)))
    if not generic:
        _clause_counts(clause, claimed, counts, vague)
    return Claims(
        items=frozenset(it for _, _, it in claimed), abstained=taken_back,
        colors=frozenset(COLOR_WORDS[m.group()] for m in COLOR_RE.finditer(clause)
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


def _count_field(value: Any) -> tuple[int | None, bool]:
    """(count, abstained) of a count field: an integer counts, a string abstains."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, False
    return None, isinstance(value, str)


def extract_claims_json(value: Mapping[str, Any] | None, fields: Mapping[str, str]) -> Claims:
    """The claims of a JSON-mode output, read field by field as its prompt declares
    (``fields``: field -> claim kind, ``PromptSpec.claims``; rules in the module docstring).
    An output that did not parse (None, not an object) claims nothing.

    Raises:
        ValueError: the output has a field the declaration does not name (the declaration is
            not the one of the prompt that made it).

    Example:
        >>> out = {"thing": "a red mug", "parts": ["handle"], "n": 2, "hidden": ["stripe"]}
        >>> c = extract_claims_json(out, {"thing": "object", "parts": "feature", "n": "count",
        ...                               "hidden": "abstention"})
        >>> sorted(c.items), sorted(c.abstained), sorted(c.colors), c.subject, c.subject_count
        (['handle', 'mug'], ['stripe'], ['red'], 'mug', 2)
    """
    if not isinstance(value, Mapping):
        return Claims()
    undeclared = sorted(set(value) - set(fields))
    if undeclared:
        raise ValueError(f"output field(s) {undeclared} are not in the prompt's claims "
                         f"declaration {sorted(fields)}: is it the prompt that made this row?")
    by_kind: dict[str, list[str]] = {}
    for name, kind in fields.items():
        by_kind.setdefault(kind, []).extend(_strings(value.get(name)))
    parts = [extract_claims(s) for s in by_kind.get("object", []) + by_kind.get("feature", [])]
    hidden = frozenset(it for s in by_kind.get("abstention", [])
                       for _, _, it in _items_in(s.lower()))
    parts.append(Claims(abstained=hidden, count_abstained=hidden))
    parts += [Claims(colors=extract_claims(s).colors) for s in by_kind.get("color", [])]
    counts = [_count_field(value.get(name)) for name, kind in fields.items()
              if kind == "count" and name in value]
    count, uncertain = counts[0] if counts else (None, False)
    return replace(_merge(parts), subject_count=count, subject_count_uncertain=uncertain)
