"""Signs in a model's text that decoding went wrong, measured without knowing what the image
shows: letters in a script the expected language is not written in (language drift), and text
that repeats itself (decoding loops). ``udfs.outputs.guardrails`` turns them into flags.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

# --- thresholds -----------------------------------------------------------------------------
# One foreign letter (a "µ" in a label, a stray glyph) is a symbol, not a change of language.
DRIFT_MIN_FOREIGN_LETTERS = 2
# Share of letters in an unexpected script from which the output counts as drifting; 2% is two
# CJK characters in a 100-letter sentence, which is how Qwen drift usually starts.
DRIFT_MIN_FOREIGN_SHARE = 0.02
# Longest word n-gram searched for back-to-back repeats; decoding loops repeat a clause or less.
REPEAT_MAX_NGRAM = 8
# Four back-to-back copies of the same n-gram: grounded prose never does that ("very, very,
# very" is three), a greedy decoding loop always does.
REPEAT_MIN_CONSECUTIVE = 4
# The same 5-word sequence three times anywhere: loops that interleave other words.
REPEAT_SPREAD_NGRAM = 5
REPEAT_SPREAD_MIN_COUNT = 3
# A unit of 1-8 characters repeated 8 times in a row ("的的的的...", "!!!!!!!!", "abab...")
# catches loops in text without spaces, which the word checks cannot see.
REPEAT_CHAR_UNIT_MAX = 8
REPEAT_CHAR_MIN_COPIES = 8

# --- language -------------------------------------------------------------------------------
# Scripts each expected language is written in (names as unicodedata spells their first word,
# with Hiragana/Katakana folded to KANA and CJK to HAN).
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{code: frozenset({"LATIN"}) for code in (
        "en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "fi", "pl", "cs", "ro",
        "hu", "tr", "id", "vi",
    )},
    **{code: frozenset({"CYRILLIC"}) for code in ("ru", "uk", "bg", "sr")},
    "el": frozenset({"GREEK"}),
    "zh": frozenset({"HAN"}),
    "ja": frozenset({"HAN", "KANA"}),
    "ko": frozenset({"HANGUL", "HAN"}),
    "ar": frozenset({"ARABIC"}),
    "he": frozenset({"HEBREW"}),
}
_SCRIPT_ALIASES = {"CJK": "HAN", "HIRAGANA": "KANA", "KATAKANA": "KANA"}
# Latin-1 and Latin Extended-A/B: letters there ("µ", "ª", "é") are Latin whatever their name.
_LATIN_BLOCKS_END = 0x0250
_WORD = re.compile(r"\w+", re.UNICODE)
_CHAR_LOOP = re.compile(
    rf"(.{{1,{REPEAT_CHAR_UNIT_MAX}}}?)\1{{{REPEAT_CHAR_MIN_COPIES - 1},}}", re.DOTALL
)


def drifts_from(prose: str, expected: frozenset[str]) -> bool:
    """True when enough of the letters of ``prose`` are in scripts outside ``expected``.

    Example:
        >>> latin = LANGUAGE_SCRIPTS["en"]
        >>> drifts_from("A red mug.", latin), drifts_from("A red 杯子.", latin)
        (False, True)
    """
    letters = foreign = 0
    for char in prose:
        if not char.isalpha():
            continue
        letters += 1
        if script_of(char) not in expected:
            foreign += 1
    return foreign >= DRIFT_MIN_FOREIGN_LETTERS and foreign / letters >= DRIFT_MIN_FOREIGN_SHARE


def repeats_itself(text: str) -> bool:
    """True for a decoding loop: a short unit of characters, an n-gram back to back, or the
    same 5-word sequence three times anywhere.

    Example:
        >>> repeats_itself("A red mug. " * 4), repeats_itself("A red mug with a handle.")
        (True, False)
    """
    if any(not m.group(1).isspace() for m in _CHAR_LOOP.finditer(text)):
        return True
    words = [w.lower() for w in _WORD.findall(text)]
    return _max_consecutive_repeats(words) >= REPEAT_MIN_CONSECUTIVE or _spread_repeats(words)


def script_of(char: str) -> str:
    """The script of one letter, e.g. ``'LATIN'``, ``'HAN'``, ``'CYRILLIC'``, ``'KANA'``.

    Example:
        >>> script_of("é"), script_of("紅"), script_of("я")
        ('LATIN', 'HAN', 'CYRILLIC')
    """
    if ord(char) < _LATIN_BLOCKS_END:
        return "LATIN"
    name = unicodedata.name(char, "")
    for prefix in ("FULLWIDTH ", "HALFWIDTH "):
        name = name.removeprefix(prefix)
    first = name.split(" ", 1)[0] if name else "UNKNOWN"
    return _SCRIPT_ALIASES.get(first, first)


def _max_consecutive_repeats(words: list[str]) -> int:
    """Most back-to-back copies of any n-gram (n <= REPEAT_MAX_NGRAM) in ``words``."""
    best = 1
    for n in range(1, min(REPEAT_MAX_NGRAM, len(words) // 2) + 1):
        for start in range(len(words) - 2 * n + 1):
            copies = 1
            while words[start + copies * n : start + (copies + 1) * n] == words[start : start + n]:
                copies += 1
            best = max(best, copies)
            if best >= REPEAT_MIN_CONSECUTIVE:
                return best
    return best


def _spread_repeats(words: list[str]) -> bool:
    n = REPEAT_SPREAD_NGRAM
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return any(c >= REPEAT_SPREAD_MIN_COUNT for c in grams.values())
