"""Guardrails: each check against its own table of outputs that must and must not fire, then
``evaluate`` (the prompt's list, order and switches) and the run-level rate helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from udfs.outputs.guardrails import (
    GUARDRAIL_DESCRIPTIONS,
    GUARDRAILS,
    OutputUnderCheck,
    check_max_flag_rate,
    check_prompt,
    check_thresholds,
    evaluate,
)
from udfs.outputs.text_signs import script_of
from udfs.prompts import PromptSpec, load_prompt_file

PROMPT_DIR = Path(__file__).resolve().parents[2] / "conf" / "prompts"


def _prompt(version: str) -> PromptSpec:
    return load_prompt_file(PROMPT_DIR / f"describe_{version}.yaml")


V1, V2, V3 = _prompt("v1"), _prompt("v2"), _prompt("v3")


def fires(gid: str, text: str, prompt: PromptSpec = V2, finish_reason: str = "stop") -> bool:
    return GUARDRAILS[gid](OutputUnderCheck(text=text, finish_reason=finish_reason, prompt=prompt))


def _table(positives: list[str], negatives: list[str]):
    """Parametrize one guardrail's table: (text, expected) pairs with readable ids."""
    cases = [(t, True) for t in positives] + [(t, False) for t in negatives]
    ids = [("fires:" if hit else "quiet:") + t[:40].replace("\n", "\\n") for t, hit in cases]
    return pytest.mark.parametrize(("text", "expected"), cases, ids=ids)


# --- registry ---------------------------------------------------------------------------------


def test_every_guardrail_has_a_one_line_description():
    assert set(GUARDRAIL_DESCRIPTIONS) == set(GUARDRAILS)
    for gid, text in GUARDRAIL_DESCRIPTIONS.items():
        assert text and "\n" not in text, gid


def test_brief_guardrails_exist():
    assert {
        "empty_output", "truncated", "language_drift", "template_leak", "markup_artifacts",
        "generic_opener", "repetition_loop", "stated_count", "scope_drift", "refusal",
        "invalid_json",
    } <= set(GUARDRAILS)


@pytest.mark.parametrize("path", sorted(PROMPT_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_prompts_have_a_sound_guardrail_setup(path):
    assert check_prompt(load_prompt_file(path)) == []


# --- one table per guardrail ------------------------------------------------------------------


@_table(["", "   ", "\n\t "], ["A red mug.", "."])
def test_empty_output(text, expected):
    assert fires("empty_output", text) is expected


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [("length", True), ("stop", False), ("unknown", False), ("", False)],
)
def test_truncated(finish_reason, expected):
    assert fires("truncated", "A red mug with a", finish_reason=finish_reason) is expected


@_table(
    [
        "The chair is 红色 with wooden legs.",
        "一把红色的木椅子。",
        "A red chair. Стул красный.",
        "A wooden bowl. 木製のボウルです。",
        "Красный стул с деревянными ножками.",
        "A brass lamp مصباح نحاسي",
        "Ａ ｒｅｄ ｍｕｇ 是红色的",
    ],
    [
        "A red wooden chair with four visible legs.",
        "A café table with a crème-coloured top; the façade cannot be seen clearly.",
        "A 5 µm scale bar below a grey cube.",
        "A blue mug with a ™ mark and a ° sign.",
        "A red mug。",  # full-width punctuation is a stray symbol, not a letter
        "A long description of a plain white ceramic vase with a narrow neck, a rounded body "
        "and a small chip near the rim that is only partly visible, plus the letter 水.",
        "",
    ],
)
def test_language_drift(text, expected):
    assert fires("language_drift", text) is expected


def test_language_drift_follows_expected_language():
    chinese = V2.model_copy(update={"expected_language": "zh"})
    assert fires("language_drift", "一把红色的木椅子。", prompt=chinese) is False
    assert fires("language_drift", "A red wooden chair.", prompt=chinese) is True
    unknown = V2.model_copy(update={"expected_language": "tlh"})
    assert fires("language_drift", "一把红色的木椅子。", prompt=unknown) is False
    assert any("tlh" in p for p in check_prompt(unknown))


def test_script_of():
    assert [script_of(c) for c in "aé紅яあアα가"] == [
        "LATIN", "LATIN", "HAN", "CYRILLIC", "KANA", "KANA", "GREEK", "HANGUL",
    ]


@_table(
    [
        "A red mug.<|im_end|>",
        "<|im_start|>assistant\nA red mug.",
        "A red mug <|vision_start|><|image_pad|><|vision_end|>",
        "A red mug.<|endoftext|>",
        "assistant\nA red mug.",
        "Assistant: A red mug.",
        "system\nYou are a careful visual describer.",
        "A red mug.</s>",
        "[INST] describe [/INST] A red mug.",
    ],
    [
        "A red mug.",
        "A user manual lying open on a desk.",
        "An assistant's badge clipped to a lanyard.",
        "A sign reading <open> in block letters.",
        "A pipe | shaped bracket.",
    ],
)
def test_template_leak(text, expected):
    assert fires("template_leak", text) is expected


@_table(
    [
        "# Red mug\nA red mug.",
        "**Subject:** a red mug",
        "- red mug\n- white handle",
        "* a red mug",
        "1. A red mug\n2. A white handle",
        "```\nA red mug\n```",
        "A `red` mug.",
        '{"subject": "a red mug"}',
        "| colour | red |",
        "__Red__ mug",
    ],
    [
        "A red mug with a white handle.",
        "A red mug - the handle cannot be seen clearly.",
        "A T-shirt with a V-neck; size 10 on the tag.",
        "A 2 x 4 wooden plank.",
        "A mug printed with the word *café*.",
    ],
)
def test_markup_artifacts(text, expected):
    assert fires("markup_artifacts", text) is expected


def test_markup_artifacts_only_for_text_prompts():
    assert fires("markup_artifacts", '{"subject": "a mug"}', prompt=V3) is False


@_table(
    [
        "This image shows a red mug.",
        "this picture depicts a red mug.",
        "The image depicts a red mug.",
        "The photo features a red mug.",
        "In this image, a red mug sits alone.",
        "In the picture there is a red mug.",
        "This is a picture of a red mug.",
        "It is a close-up photo of a red mug.",
        "  \"The image is of a red mug.",
        "Here is a red mug.",
        "I can see a red mug.",
        "The thumbnail shows a red mug.",
    ],
    [
        "A red mug with a white handle.",
        "Red mug; the handle cannot be seen clearly.",
        "A picture frame with a white border.",
        "The image-stabilised lens of a camera.",
        "Images of cats printed on a blue mug.",
        "A mug. This image shows nothing else.",  # generic, but not an opener
    ],
)
def test_generic_opener(text, expected):
    assert fires("generic_opener", text) is expected


@_table(
    [
        "A red mug a red mug a red mug a red mug",
        "A chair with legs legs legs legs legs.",
        "The mug is red. The mug is red. The mug is red. The mug is red.",
        "A mug with a handle and a rim, a mug with a handle and a base, a mug with a handle and "
        "a lid, a mug with a handle and",
        "的的的的的的的的的的的的",
        "A red mug!!!!!!!!!!!!",
        "A mug abababababababababab",
    ],
    [
        "A red mug with a white handle.",
        "A very, very, very small red mug.",
        "A cat. A cat. A cat.",
        "A striped mug: red, white, red, white stripes.",
        "A red mug...",
        "A red mug.        The handle cannot be seen clearly.",
        "A barcode reading 1,000,000.",
    ],
)
def test_repetition_loop(text, expected):
    assert fires("repetition_loop", text) is expected


@_table(
    [
        "Three chairs stand in a row.",
        "A table with four legs.",
        "2 dogs sitting on a rug.",
        "A pair of sneakers.",
        "Twenty-two beads on a string.",
        "A box of 12 eggs.",
        "A dozen roses.",
        "Two of the drawers are open.",
        "A tray holding 3.5 loaves.",
    ],
    [
        "A red chair.",
        "One of the chair legs cannot be seen clearly.",
        "A one-piece swimsuit.",
        "A two-tone jacket.",
        "Several mugs in a row.",
        "A few pencils and many crayons.",
        "Dozens of beads; hundreds of sequins.",
        "A single red mug.",
        "Both handles are white.",
        "A jersey with the number 23 printed on it.",
        "A sign reading 24 hours.",
        "A jersey with #10 on the back.",
        "A stool, 45 cm tall, from 2019.",
        "A 3D printer.",
        "A 1st-place ribbon.",
        "A 2 x 4 plank.",
        "A 2\u00d74 plank.",
        "Size 10 shoes.",
    ],
)
def test_stated_count(text, expected):
    assert fires("stated_count", text) is expected


def test_stated_count_needs_forbids_counts():
    assert fires("stated_count", "Three chairs.", prompt=V2) is True
    assert fires("stated_count", "Three chairs.", prompt=V1) is False
    assert fires("stated_count", "Three chairs.", prompt=V3) is False


@_table(
    [
        "A red mug next to a laptop.",
        "A red mug beside a plate.",
        "A red mug; in the background a shelf.",
        "A lamp behind the sofa.",
        "A chair adjacent to a table.",
        "A vase surrounded by flowers.",
        "A mug on the left of a kettle.",
        "A mug to the right of a plate.",
        "A bench with trees nearby.",
        "A mug in front of a window.",
        "A lamp alongside a clock.",
        "A plate, with other objects around it.",
    ],
    [
        "A red mug with a white handle.",
        "A red mug on a white background.",
        "A mug whose logo is near the top.",
        "The left side of the mug cannot be seen clearly.",
        "Besides the handle, the mug is plain.",
        "A chair seen from the front.",
    ],
)
def test_scope_drift(text, expected):
    assert fires("scope_drift", text) is expected


def test_scope_drift_needs_restricts_scope():
    assert fires("scope_drift", "A mug next to a plate.", prompt=V2) is True
    assert fires("scope_drift", "A mug next to a plate.", prompt=V1) is False


@_table(
    [
        "I'm sorry, but I can't help with that.",
        "Sorry, I cannot describe this image.",
        "I am sorry, there is nothing to describe.",
        "As an AI, I cannot see images.",
        "As a language model I have no eyes.",
        "I cannot describe this image.",
        "I'm unable to process the image.",
        "I can't see the image.",
        "I can't see any picture here.",
        "No image was provided.",
        "My apologies, I do not know.",
        "I won't help with identifying people.",
        "I\u2019m sorry, I can\u2019t help with that.",
        "I\u2019m not able to view the photo.",
    ],
    [
        "A grey sofa; the fabric cannot be seen clearly.",
        "A red mug. Its base cannot be seen.",
        "I cannot see the legs clearly.",
        "I can't see the image clearly; a dark shape, possibly a chair.",
        "The brand cannot be determined.",
        "A card printed with the words 'sorry for your loss'.",
        "A 'Sorry, we're closed' sign.",
        "A mug that can't be seen well in the dim light.",
    ],
)
def test_refusal(text, expected):
    assert fires("refusal", text) is expected


def _v3_answer(**changes: Any) -> str:
    value: dict[str, Any] = {
        "subject": "a red mug",
        "colors": ["red"],
        "count": "uncertain",
        "visible_features": ["handle"],
        "not_visible": ["base"],
        "confidence": "medium",
    }
    value.update(changes)
    return json.dumps(value)


@_table(
    [
        "",
        _v3_answer()[:-5],
        "A red mug.",
        _v3_answer(extra=1),
        _v3_answer(count=-3),
        "```json\n" + _v3_answer() + "\n```",
    ],
    [_v3_answer(), _v3_answer(colors="not_visible", count=2, confidence="low")],
)
def test_invalid_json(text, expected):
    assert fires("invalid_json", text, prompt=V3) is expected


def test_invalid_json_never_fires_for_text_prompts():
    assert fires("invalid_json", "A red mug.", prompt=V2) is False


def test_json_prose_checks_read_values_not_keys():
    # "not_visible" and the braces are JSON syntax, not prose: no drift, no markup, no scope.
    assert evaluate(_v3_answer(), "stop", V3) == []
    drifting = _v3_answer(subject="一把红色的椅子", visible_features=["next to a table"])
    assert evaluate(drifting, "stop", V3) == ["language_drift", "scope_drift"]


# --- evaluate ---------------------------------------------------------------------------------


def test_evaluate_returns_fired_ids_in_prompt_order():
    text = "This image shows three chairs next to a table."
    assert evaluate(text, "length", V2) == [
        "truncated", "generic_opener", "stated_count", "scope_drift",
    ]
    reordered = V2.model_copy(update={"guardrails": ["scope_drift", "generic_opener"]})
    assert evaluate(text, "length", reordered) == ["scope_drift", "generic_opener"]


def test_evaluate_only_runs_the_prompts_guardrails():
    text = "This image shows three chairs next to a table."
    assert evaluate(text, "stop", V1) == []  # v1 lists neither opener, counts nor scope
    none = V2.model_copy(update={"guardrails": []})
    assert evaluate("", "length", none) == []


def test_evaluate_honours_the_switches():
    text = "Three chairs next to a table."
    assert evaluate(text, "stop", V2) == ["stated_count", "scope_drift"]
    relaxed = V2.model_copy(update={"forbids_counts": False, "restricts_scope": False})
    assert evaluate(text, "stop", relaxed) == []
    assert len(check_prompt(relaxed)) == 2


def test_evaluate_skips_unknown_ids_and_check_prompt_reports_them():
    typo = V2.model_copy(update={"guardrails": ["empty_outptu", "empty_output"]})
    assert evaluate("", "stop", typo) == ["empty_output"]
    assert check_prompt(typo) == [
        f"unknown guardrail 'empty_outptu'; known: {sorted(GUARDRAILS)}"
    ]


def test_evaluate_tolerates_missing_text_and_finish_reason():
    assert evaluate(None, None, V2) == ["empty_output"]  # type: ignore[arg-type]


def test_clean_grounded_description_passes_v2():
    text = (
        "A red ceramic mug with a white handle, seen from the side. "
        "The base cannot be seen clearly."
    )
    assert evaluate(text, "stop", V2) == []


# --- rates and thresholds ---------------------------------------------------------------------


def test_check_thresholds():
    rates = {"truncated": 0.2, "refusal": 0.01, "template_leak": 0.0}
    limits = {"refusal": 0.0, "truncated": 0.2, "language_drift": 0.0, "template_leak": 0.0}
    assert check_thresholds(rates, limits) == ["refusal"]
    assert check_thresholds(rates, {"truncated": 0.1, "refusal": 0.5}) == ["truncated"]
    assert check_thresholds({}, {"truncated": 0.0}) == []


@pytest.mark.parametrize(
    ("limits", "message"),
    [({"truncatd": 0.1}, "unknown guardrail"), ({"truncated": 1.5}, r"\[0, 1\]")],
)
def test_bad_limits_are_refused(limits, message):
    with pytest.raises(ValueError, match=message):
        check_max_flag_rate(limits)
