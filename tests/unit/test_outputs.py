"""Structured outputs: parsing never raises, validation follows the schema, columns are typed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from udfs.outputs.structured import (
    ParsedOutput,
    check_schema,
    non_portable_keywords,
    parse_structured,
    structured_columns,
    to_row_values,
)
from udfs.prompts import load_prompt_file

PROMPT_DIR = Path(__file__).resolve().parents[2] / "conf" / "prompts"


@pytest.fixture(scope="module")
def v3_schema() -> dict[str, Any]:
    spec = load_prompt_file(PROMPT_DIR / "describe_v3.yaml")
    assert spec.output.json_schema is not None
    return spec.output.json_schema


def _answer(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "subject": "a red ceramic mug",
        "colors": ["red", "white"],
        "count": 1,
        "visible_features": ["handle", "rim"],
        "not_visible": ["base"],
        "confidence": "high",
    }
    value.update(changes)
    return value


# --- describe_v3.yaml -------------------------------------------------------------------------


def test_v3_prompt_is_json_mode_with_a_portable_valid_schema(v3_schema):
    spec = load_prompt_file(PROMPT_DIR / "describe_v3.yaml")
    assert spec.key == "describe/v3"
    assert spec.output.mode == "json"
    assert spec.forbids_counts is False
    assert "invalid_json" in spec.guardrails and "stated_count" not in spec.guardrails
    check_schema(v3_schema)
    assert non_portable_keywords(v3_schema) == []
    assert v3_schema["additionalProperties"] is False
    assert set(v3_schema["required"]) == set(v3_schema["properties"])


def test_v3_keeps_v2_rules():
    v2 = load_prompt_file(PROMPT_DIR / "describe_v2.yaml")
    v3 = load_prompt_file(PROMPT_DIR / "describe_v3.yaml")
    assert v3.scope_rules == v2.scope_rules
    assert len(v3.negative_rules) == len(v2.negative_rules)
    assert v3.content_hash() != v2.content_hash()


# --- parse_structured -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        _answer(),
        _answer(colors="not_visible", count="uncertain", confidence="low"),
        _answer(count=0, visible_features=[], not_visible=[]),
    ],
    ids=["plain", "uncertain", "empty-lists"],
)
def test_valid_answers_parse(v3_schema, value):
    text = "\n  " + json.dumps(value, indent=2) + "\n"
    parsed = parse_structured(text, v3_schema)
    assert parsed == ParsedOutput(ok=True, value=value, error=None)


@pytest.mark.parametrize(
    ("text", "error_part"),
    [
        ("", "empty output"),
        ("   \n", "empty output"),
        (json.dumps(_answer())[:-12], "not valid JSON"),  # cut off by max_tokens
        ('{"subject": "a mug", "colors": ["red"', "not valid JSON"),
        ("```json\n" + json.dumps(_answer()) + "\n```", "not valid JSON"),
        ("Here is the JSON: " + json.dumps(_answer()), "not valid JSON"),
        (json.dumps(_answer()) + " trailing words", "not valid JSON"),
        ('{"subject": NaN}', "NaN is not allowed"),
        ("[1, 2, 3]", "expected a JSON object, got list"),
        ('"just a string"', "expected a JSON object, got str"),
        (json.dumps(_answer(extra="x")), "Additional properties"),
        (json.dumps({k: v for k, v in _answer().items() if k != "count"}), "'count' is a required"),
        (json.dumps(_answer(count="3")), "count"),
        (json.dumps(_answer(count=-1)), "count"),
        (json.dumps(_answer(count=2.5)), "count"),
        (json.dumps(_answer(colors="red")), "colors"),
        (json.dumps(_answer(confidence="certain")), "confidence"),
        (json.dumps(_answer(visible_features=["leg", 2])), "visible_features/1"),
        (json.dumps(_answer(visible_features=["leg"] * 9)), "visible_features"),
        (json.dumps(_answer(subject=None)), "subject"),
    ],
    ids=[
        "empty", "blank", "truncated", "truncated-array", "code-fence", "prose-before",
        "prose-after", "nan", "list", "string", "extra-key", "missing-key", "count-str",
        "count-negative", "count-float", "colors-free-string", "confidence-enum",
        "features-ints", "features-too-many", "subject-null",
    ],
)
def test_bad_text_is_data_not_an_exception(v3_schema, text, error_part):
    parsed = parse_structured(text, v3_schema)
    assert parsed.ok is False
    assert parsed.value is None
    assert error_part in (parsed.error or "")


def test_non_text_input_does_not_raise(v3_schema):
    parsed = parse_structured(None, v3_schema)  # type: ignore[arg-type]
    assert not parsed.ok and "expected text" in (parsed.error or "")


def test_deeply_nested_text_does_not_raise():
    parsed = parse_structured("[" * 100_000 + "]" * 100_000, {"type": "object"})
    assert not parsed.ok


def test_invalid_schema_is_a_configuration_error():
    with pytest.raises(ValueError, match="invalid JSON schema"):
        parse_structured("{}", {"type": "not-a-type"})
    with pytest.raises(ValueError, match="mapping"):
        check_schema(["not", "a", "schema"])  # type: ignore[arg-type]


# --- non_portable_keywords ---------------------------------------------------------------------


def test_non_portable_keywords_found_at_any_depth_but_not_as_property_names():
    schema = {
        "type": "object",
        "properties": {
            "format": {"type": "string"},
            "code": {"type": "string", "pattern": "^[A-Z]+$"},
            "tags": {"type": "array", "items": {"type": "string", "format": "email"}},
            "parts": {"anyOf": [{"type": "array", "uniqueItems": True}, {"enum": ["none"]}]},
        },
    }
    assert non_portable_keywords(schema) == ["format", "pattern", "uniqueItems"]


# --- structured_columns / to_row_values --------------------------------------------------------


def test_v3_columns(v3_schema):
    assert structured_columns(v3_schema) == [
        ("subject", "STRING"),
        ("colors", "STRING"),
        ("count", "STRING"),
        ("visible_features", "ARRAY<STRING>"),
        ("not_visible", "ARRAY<STRING>"),
        ("confidence", "STRING"),
    ]


def test_plain_types_map_to_spark_types():
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "n": {"type": "integer"},
            "score": {"type": "number"},
            "flag": {"type": "boolean"},
            "level": {"enum": ["a", "b"]},
            "mixed_enum": {"enum": ["a", 1]},
            "nullable": {"type": ["string", "null"]},
            "obj": {"type": "object", "properties": {"x": {"type": "integer"}}},
            "ints": {"type": "array", "items": {"type": "integer"}},
        },
    }
    assert dict(structured_columns(schema)) == {
        "name": "STRING",
        "n": "BIGINT",
        "score": "DOUBLE",
        "flag": "BOOLEAN",
        "level": "STRING",
        "mixed_enum": "STRING",
        "nullable": "STRING",
        "obj": "STRING",
        "ints": "STRING",
    }


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "object"}, "properties"),
        ({"type": "object", "properties": {}}, "properties"),
        ({"type": "object", "properties": {"bad name": {"type": "string"}}}, "bad name"),
        ({"type": "object", "properties": {"a-b": {"type": "string"}}}, "a-b"),
    ],
)
def test_columns_need_named_properties(schema, message):
    with pytest.raises(ValueError, match=message):
        structured_columns(schema)


def test_row_values_for_v3(v3_schema):
    row = to_row_values(_answer(), v3_schema)
    assert row == {
        "subject": "a red ceramic mug",
        "colors": '["red","white"]',
        "count": "1",
        "visible_features": ["handle", "rim"],
        "not_visible": ["base"],
        "confidence": "high",
    }
    assert json.loads(row["colors"]) == ["red", "white"]
    assert json.loads(row["count"]) == 1


def test_row_values_keep_uncertainty_readable_in_sql(v3_schema):
    row = to_row_values(_answer(colors="not_visible", count="uncertain"), v3_schema)
    assert row["colors"] == "not_visible"
    assert row["count"] == "uncertain"


def test_row_values_are_all_none_when_parsing_failed(v3_schema):
    parsed = parse_structured("{", v3_schema)
    row = to_row_values(parsed.value, v3_schema)
    assert list(row) == [name for name, _ in structured_columns(v3_schema)]
    assert set(row.values()) == {None}


def test_row_values_missing_property_is_none_and_numbers_are_typed():
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "x": {"type": "number"}, "b": {"type": "boolean"}},
    }
    assert to_row_values({"x": 2}, schema) == {"n": None, "x": 2.0, "b": None}
    assert to_row_values({"n": 3, "b": False}, schema) == {"n": 3, "x": None, "b": False}


@pytest.mark.parametrize(
    "value",
    [{"n": True}, {"n": "3"}, {"tags": "red"}, {"tags": [1]}],
    ids=["bool-as-int", "str-as-int", "str-as-array", "ints-in-string-array"],
)
def test_row_values_refuse_unvalidated_shapes(value):
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    with pytest.raises(ValueError):
        to_row_values(value, schema)
