"""Checks on every model output. Each guardrail is a small pure function with a stable id that
returns True when the output breaks a rule; a row's ``guardrail_flags`` lists the ids that fired.

A prompt names the guardrails that apply to it (``PromptSpec.guardrails``). Some only make sense
for some prompts and check the prompt themselves: ``stated_count`` needs ``forbids_counts``,
``scope_drift`` needs ``restricts_scope``, ``markup_artifacts`` needs text mode and
``invalid_json`` JSON mode. For JSON outputs the prose checks (language, scope, refusal...) read
the string values of the parsed object, so JSON keys and punctuation never count as prose.

Language drift and repetition are measured in ``udfs.outputs.text_signs``; the patterns for the
other checks are here. The checks are heuristics for review and for run-level alarms
(``flag_rates`` and ``check_thresholds``), not proof: a flag says "look at this row".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from udfs.outputs.structured import ParsedOutput, parse_structured
from udfs.outputs.text_signs import LANGUAGE_SCRIPTS, drifts_from, repeats_itself
from udfs.prompts import PromptSpec

# --- patterns -------------------------------------------------------------------------------
_SPECIAL_TOKEN = re.compile(r"<\|[a-z_]{2,40}\|>|</?s>|\[/?INST\]|<image>|<unk>", re.IGNORECASE)
_ROLE_HEADER = re.compile(r"^\s*(?:assistant|system|user)\s*(?:\n|:)", re.IGNORECASE)
_MARKUP = re.compile(
    r"^\s{0,3}#{1,6}\s"  # heading
    r"|^\s*(?:[-*+\u2022]|\d{1,2}[.)])\s+\S"  # bullet or numbered list item
    r"|\*\*[^*\n]+\*\*|__[^_\n]+__"  # bold
    r"|```|`[^`\n]+`"  # code fence, inline code
    r"|^\s*\|.*\|\s*$"  # table row
    r"|[{}]",  # JSON (or template) braces
    re.MULTILINE,
)
_MEDIUM = r"(?:image|picture|photo|photograph|pic|thumbnail|screenshot|snapshot|scene)"
_GENERIC_OPENER = re.compile(
    r"^[\s\"'*(]*(?:"
    rf"(?:this|the)\s+{_MEDIUM}\s+(?:shows|depicts|displays|features|contains|presents|"
    r"captures|illustrates|portrays|is\s+of|appears\s+to\s+show)\b"
    rf"|(?:in|within)\s+(?:this|the)\s+{_MEDIUM}\b"
    rf"|(?:this|it)\s+is\s+(?:a|an)\s+(?:close-up\s+)?{_MEDIUM}\s+of\b"
    r"|here\s+(?:is|we\s+(?:see|have))\b"
    r"|(?:i\s+(?:can\s+)?see|we\s+(?:can\s+)?see)\b"
    r")",
    re.IGNORECASE,
)
# Exact counts only. Not counts, by decision: "one"/"a single"/"both" (the subject is one thing,
# saying so guesses nothing; "one of the", "one-piece" stay quiet), vague quantities ("several",
# "a few", "many", "dozens of", "hundreds of", "a couple of"), and hyphenated attributes
# ("two-tone", "three-legged": a known miss, traded for no false alarms on colour words).
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_NUMBER_WORDS = (
    "two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    f"sixteen|seventeen|eighteen|nineteen|{_TENS}|hundred|thousand|dozen"
)
_DIGIT_WORDS = "one|two|three|four|five|six|seven|eight|nine"
# "number 7", "size 10": a numeral that names rather than counts.
_LABEL_WORDS = (
    r"number|no\.?|#|size|model|page|version|digit|digits|numeral|reading|reads|labell?ed|"
    r"marked|says|code"
)
_UNITS = (
    r"mm|cm|m|km|in|inch|inches|ft|feet|foot|kg|g|lb|lbs|oz|ml|l|px|mp|x|am|pm|percent|"
    r"degrees?|years?|o'clock|s|sec|seconds|minutes?|hours?|v|w|mph|kmh|gb|mb|tb"
)
_STOP_AFTER_NUMERAL = r"and|or|to|of|on|in|at|by|is|are|was|with|for|the|a|an"
_STATED_COUNT = re.compile(
    # A number word standing alone (not "two-tone"); labels ("number twenty") are dropped
    # afterwards by _LABEL_BEFORE, since a look-behind cannot hold a list of words.
    rf"(?<![\w-])(?:{_NUMBER_WORDS})(?![\w-])"
    rf"|(?<![\w-])(?:{_TENS})-(?:{_DIGIT_WORDS})(?![\w-])"
    r"|\ba\s+(?:pair|trio)\s+of\b"
    # A numeral followed by a word that is neither a unit nor a function word ("2 dogs").
    # "2 x 4" is a size, not four things.
    rf"|(?<![\w.,#/-])(?<!x )(?<!\u00d7 )(?<!\u00d7)\d+(?:[.,]\d+)?\s+"
    rf"(?!(?:{_UNITS}|{_STOP_AFTER_NUMERAL})\b)[a-z]",
    re.IGNORECASE,
)
_LABEL_BEFORE = re.compile(rf"(?<!\w)(?:{_LABEL_WORDS})\s*[:\"']?\s*$", re.IGNORECASE)
_SCOPE_DRIFT = re.compile(
    r"\b(?:next\s+to|beside|alongside|adjacent|surrounded\s+by|nearby|neighbou?ring|"
    r"in\s+the\s+(?:background|distance)|behind|in\s+front\s+of|"
    r"(?:on|to)\s+(?:the|its)\s+(?:left|right)\s+(?:of|side\s+of)|accompanied\s+by|"
    r"along\s+with|also\s+visible|other\s+(?:objects|items))\b",
    re.IGNORECASE,
)
_MEDIUM_NOUN = r"(?:image|picture|photo|photograph|pic)"
_APOS = "['\u2019]"  # models write both "I'm" and "I\u2019m"
_I_CANNOT = (
    rf"\bi(?:\s+(?:cannot|can{_APOS}?t|can\s+not|won{_APOS}?t|"
    r"am\s+unable\s+to|am\s+not\s+able\s+to)"
    rf"|{_APOS}m\s+(?:unable\s+to|not\s+able\s+to))"
)
# Refusing the task, not reporting limits: "I cannot see the legs clearly" and "the colour
# cannot be seen clearly" are what v2 asks for, so only the whole image or the task counts.
_REFUSAL = re.compile(
    rf"\b(?:i{_APOS}?m|i\s+am)\s+(?:so\s+|very\s+)?sorry\b|^\W*sorry\b|\bmy\s+apologies\b"
    r"|\bi\s+apologi[sz]e\b"
    r"|\bas\s+an?\s+(?:ai|language\s+model|large\s+language\s+model|assistant)\b"
    rf"|\bi(?:{_APOS}m|\s+am)\s+(?:an?\s+)?(?:ai|language\s+model|text-based)\b"
    rf"|{_I_CANNOT}\s+(?:help|assist|comply|fulfil+|"
    r"(?:describe|process|analy[sz]e|view|access|open|see)\s+(?:the|this|that|any|an?)\s+"
    rf"{_MEDIUM_NOUN}s?\b(?!\s+(?:clearly|well|in\s+detail|fully)))"
    rf"|\b(?:no|without\s+an?)\s+{_MEDIUM_NOUN}\s+(?:was\s+|is\s+|has\s+been\s+)?"
    r"(?:provided|attached|uploaded|shared|included)\b",
    re.IGNORECASE | re.MULTILINE,
)
@dataclass(frozen=True)
class OutputUnderCheck:
    """One output and the prompt it answers; parsed JSON and prose are computed once."""

    text: str
    finish_reason: str
    prompt: PromptSpec

    @property
    def is_json(self) -> bool:
        return self.prompt.output.mode == "json"

    @cached_property
    def parsed(self) -> ParsedOutput | None:
        """The parsed JSON for JSON-mode prompts, else None."""
        if not self.is_json or self.prompt.output.json_schema is None:
            return None
        return parse_structured(self.text, self.prompt.output.json_schema)

    @cached_property
    def prose(self) -> str:
        """The words the model wrote: the text, or a JSON output's string values."""
        parsed = self.parsed
        if parsed is None or not parsed.ok:
            return self.text
        return ". ".join(_string_leaves(parsed.value))


Check = Callable[[OutputUnderCheck], bool]


def _empty_output(out: OutputUnderCheck) -> bool:
    return not out.text.strip()


def _truncated(out: OutputUnderCheck) -> bool:
    return out.finish_reason == "length"


def _language_drift(out: OutputUnderCheck) -> bool:
    expected = LANGUAGE_SCRIPTS.get(out.prompt.expected_language.split("-")[0].lower())
    if expected is None:
        return False  # unknown language: check_prompt reports it on the driver
    return drifts_from(out.prose, expected)


def _template_leak(out: OutputUnderCheck) -> bool:
    return bool(_SPECIAL_TOKEN.search(out.text) or _ROLE_HEADER.match(out.text))


def _markup_artifacts(out: OutputUnderCheck) -> bool:
    return not out.is_json and bool(_MARKUP.search(out.text))


def _generic_opener(out: OutputUnderCheck) -> bool:
    return bool(_GENERIC_OPENER.match(out.prose))


def _repetition_loop(out: OutputUnderCheck) -> bool:
    return repeats_itself(out.text)


def _stated_count(out: OutputUnderCheck) -> bool:
    if not out.prompt.forbids_counts:
        return False
    for match in _STATED_COUNT.finditer(out.prose):
        if not _LABEL_BEFORE.search(out.prose[: match.start()]):
            return True
    return False


def _scope_drift(out: OutputUnderCheck) -> bool:
    return out.prompt.restricts_scope and bool(_SCOPE_DRIFT.search(out.prose))


def _refusal(out: OutputUnderCheck) -> bool:
    return bool(_REFUSAL.search(out.prose))


def _invalid_json(out: OutputUnderCheck) -> bool:
    return out.parsed is not None and not out.parsed.ok


GUARDRAILS: dict[str, Check] = {
    "empty_output": _empty_output,
    "truncated": _truncated,
    "language_drift": _language_drift,
    "template_leak": _template_leak,
    "markup_artifacts": _markup_artifacts,
    "generic_opener": _generic_opener,
    "repetition_loop": _repetition_loop,
    "stated_count": _stated_count,
    "scope_drift": _scope_drift,
    "refusal": _refusal,
    "invalid_json": _invalid_json,
}

GUARDRAIL_DESCRIPTIONS: dict[str, str] = {
    "empty_output": "The output is empty or only whitespace.",
    "truncated": "Generation stopped at max_tokens (finish_reason 'length'); the text is cut off.",
    "language_drift": "Letters in a script other than the prompt's expected language "
    "(e.g. Chinese characters in an English description).",
    "template_leak": "Chat-template text leaked into the output: special tokens such as "
    "<|im_end|> or a role header such as 'assistant'.",
    "markup_artifacts": "Markdown (headings, bold, bullets, code) or JSON braces in a plain-text "
    "description.",
    "generic_opener": "Starts with a generic phrase ('This image shows', 'In this image') instead "
    "of the subject.",
    "repetition_loop": "The same words or characters repeat over and over: a decoding loop.",
    "stated_count": "States a count ('three chairs', '2 dogs', 'a pair of') although the prompt "
    "forbids guessing counts.",
    "scope_drift": "Describes things around the subject ('next to', 'in the background', "
    "'behind') although the prompt restricts scope to the subject.",
    "refusal": "The model refused or apologised ('I'm sorry', 'As an AI', 'I cannot describe "
    "this image') instead of describing.",
    "invalid_json": "The output is not one JSON object matching the prompt's schema.",
}


def evaluate(text: str, finish_reason: str, prompt: PromptSpec) -> list[str]:
    """Ids of the prompt's guardrails that fire on this output, in the prompt's order.

    Ids the prompt lists that are not in ``GUARDRAILS`` are skipped here (rows must not fail on
    a config typo); ``check_prompt`` reports them on the driver before a run.

    Example:
        For describe/v2, ``evaluate("This image shows three chairs.", "stop", v2)`` returns
        ``['generic_opener', 'stated_count']``.
    """
    out = OutputUnderCheck(text=text or "", finish_reason=finish_reason or "", prompt=prompt)
    return [gid for gid in prompt.guardrails if gid in GUARDRAILS and GUARDRAILS[gid](out)]


def check_prompt(prompt: PromptSpec) -> list[str]:
    """Problems with a prompt's guardrail setup (empty when fine); for the driver, before a run.

    Reports unknown guardrail ids, an ``expected_language`` that ``language_drift`` cannot check,
    and switches that make a listed guardrail a no-op (``stated_count`` without
    ``forbids_counts``, ``invalid_json`` on a text prompt...).
    """
    listed = set(prompt.guardrails)
    problems = [
        f"unknown guardrail {gid!r}; known: {sorted(GUARDRAILS)}"
        for gid in prompt.guardrails
        if gid not in GUARDRAILS
    ]
    language = prompt.expected_language.split("-")[0].lower()
    if "language_drift" in listed and language not in LANGUAGE_SCRIPTS:
        problems.append(
            f"language_drift cannot check expected_language {prompt.expected_language!r}; "
            f"known: {sorted(LANGUAGE_SCRIPTS)}"
        )
    is_json = prompt.output.mode == "json"
    inert = {
        "stated_count": not prompt.forbids_counts,
        "scope_drift": not prompt.restricts_scope,
        "invalid_json": not is_json,
        "markup_artifacts": is_json,
    }
    problems += [f"guardrail {gid!r} never fires for this prompt" for gid, no in inert.items()
                 if gid in listed and no]
    return problems


def check_max_flag_rate(max_flag_rate: dict[str, float]) -> None:
    """Raise ValueError when ``max_flag_rate`` names an unknown guardrail (a typo would
    silently disable the alarm) or gives a maximum outside [0, 1]. The job config calls this,
    so a bad limit fails before Spark starts.

    Example:
        >>> check_max_flag_rate({"truncated": 1.5})
        Traceback (most recent call last):
        ValueError: max_flag_rate: maxima must be within [0, 1], got {'truncated': 1.5}
    """
    unknown = sorted(set(max_flag_rate) - set(GUARDRAILS))
    if unknown:
        raise ValueError(
            f"max_flag_rate: unknown guardrail(s) {unknown}; known: {sorted(GUARDRAILS)}"
        )
    bad = {gid: v for gid, v in max_flag_rate.items() if not 0.0 <= v <= 1.0}
    if bad:
        raise ValueError(f"max_flag_rate: maxima must be within [0, 1], got {bad}")


def check_thresholds(rates: dict[str, float], max_flag_rate: dict[str, float]) -> list[str]:
    """Ids whose rate is strictly above their maximum, in ``max_flag_rate``'s order (checked
    by ``check_max_flag_rate`` when the config was loaded). An id without a rate has rate 0.
    The job exits non-zero when this is not empty.

    Example:
        >>> check_thresholds({"truncated": 0.2}, {"truncated": 0.1, "refusal": 0.0})
        ['truncated']
    """
    return [gid for gid, limit in max_flag_rate.items() if rates.get(gid, 0.0) > limit]


def _string_leaves(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _string_leaves(item)]
    if isinstance(value, list):
        return [s for item in value for s in _string_leaves(item)]
    return []
