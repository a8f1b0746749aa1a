"""The grounding vocabulary: the words a description can claim things with, mapped to the
canonical names of ``udfs.evaluation.scenes``, and the patterns ``udfs.evaluation.claims`` reads
text with (numbers, clause cuts, negation and uncertainty cues).

Vocabulary. Every word is matched case-insensitively as a whole word, in singular and plural
(``leaf``/``leaves``); multi-word forms also match with a hyphen (``lamp-shade``), and the longest
form wins (``desk lamp`` is a lamp, not a desk). ``OBJECT_SYNONYMS`` and ``FEATURE_SYNONYMS`` map
surface words to the items of ``udfs.evaluation.scene_objects`` (object types and their
parts); ``COLOR_SYNONYMS`` maps colour words to its ``PALETTE`` names. Words left out on
purpose: ``light`` (a colour shade or a lamp), ``seat``, ``back`` and ``arm`` (parts of too many
things), ``plant`` (not always a flower), ``rose`` (a flower or a colour), ``shade of`` (a tone,
not a lampshade).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

# Object types (udfs.evaluation.scene_objects.SUBJECT_TYPES): generic and everyday names the
# models use for them.
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
# Parts and features drawn on some subjects (udfs.evaluation.scene_objects.ALL_FEATURES).
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
# Colour words -> palette names (udfs.evaluation.scene_objects.PALETTE). "-ish" forms are
# listed, not derived.
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

NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "single": 1, "pair of": 2, "dozen": 12,
}
# Hyphenated counts: "four-legged table" states four legs.
COUNT_SUFFIXES = {"legged": "leg", "wheeled": "wheel", "petaled": "petal", "petalled": "petal",
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


ITEM_WORDS = _lexicon({**OBJECT_SYNONYMS, **FEATURE_SYNONYMS}, plurals=True)
COLOR_WORDS = _lexicon(COLOR_SYNONYMS, plurals=False)
ITEM_RE = _pattern(ITEM_WORDS)
COLOR_RE = _pattern(COLOR_WORDS)
_NUM = r"(?:\d{1,3}|" + "|".join(sorted(NUMBERS, key=len, reverse=True)).replace(" ", r"\s+") + ")"
NUM_RE = re.compile(rf"(?<![\w.,-]){_NUM}(?![\w-]|[.,]\d)")
RANGE_RE = re.compile(rf"(?<![\w.,-]){_NUM}\s*(?:-|\u2013|to|or)\s*{_NUM}\b")
HYPHEN_COUNT_RE = re.compile(rf"(?<![\w-])({_NUM})-({'|'.join(COUNT_SUFFIXES)})\b")
VAGUE_RE = re.compile(r"\b(?:several|few|some|many|multiple|numerous|various|couple\s+of|"
                       r"number\s+of|handful\s+of|lots\s+of|plenty\s+of)\b")
CLAUSE_SPLIT = re.compile(r"[.;:!?()\n,]|\b(?:and|but|with|while|whereas|which|however|"
                           r"although|though)\b")
# Negations: only what follows them ("no chimney", "without a handle").
NEGATION_RE = re.compile(r"\b(?:no|without|lacks?|lacking|none|neither|nor|never|whether)\b")
# Uncertainty: what follows them, else the nearest item before ("the legs are not visible").
UNCERTAIN_RE = re.compile(
    r"\b(?:not|cannot|can\s+not|unable|unclear|uncertain|unsure|invisible|absent|missing|"
    r"hidden|obscured|indistinct|indiscernible)\b|n't\b"
    r"|\b(?:hard|difficult|impossible)\s+to\s+(?:see|tell|make\s+out|count|determine|discern|"
    r"distinguish|identify)\b"
    r"|\btoo\s+(?:small|blurry|blurred|dark|faint|low)\b"
)
COUNT_WORD_RE = re.compile(r"\b(?:count|counted|counting|number|how\s+many)\b|\bcountless\b")
