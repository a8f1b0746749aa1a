"""Structured (JSON-mode) outputs: parse and validate, and map them to table columns.

A prompt with ``output.mode: json`` is decoded under its JSON schema by vLLM's structured
outputs, but the text is still checked here: the transformers engine does not constrain
decoding, and a constrained output cut off by ``max_tokens`` is not valid JSON. Parsing never
raises on bad text; the failure is data (``ParsedOutput.error``) and the ``invalid_json``
guardrail.

Column mapping (``structured_columns``): each top-level property becomes one column. A property
with one plain type gets that Spark type; one that allows several shapes (``4`` or
``"uncertain"``, a list or ``"not_visible"``) becomes a STRING: a string value is stored as
itself, so ``count = 'uncertain'`` works in SQL, and any other value as compact JSON text
(``'4'``, ``'["red","blue"]'``), readable with ``from_json``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

# Spark types for a property that has exactly one JSON type. Anything else is JSON text.
_PLAIN_TYPES: dict[str, str] = {
    "string": "STRING",
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
}
STRING_ARRAY_TYPE = "ARRAY<STRING>"
JSON_TEXT_TYPE = "STRING"
# Keywords that vLLM's structured-output backends reject or silently ignore in some versions
# (xgrammar, guidance); a prompt schema using them would not be enforced the same everywhere.
NON_PORTABLE_KEYWORDS = frozenset(
    {
        "format", "pattern", "patternProperties", "propertyNames", "uniqueItems", "contains",
        "minContains", "maxContains", "multipleOf", "$ref", "allOf", "not", "if", "then", "else",
        "dependentSchemas", "dependentRequired", "unevaluatedProperties", "unevaluatedItems",
    }
)
# Column names go into Spark DDL unquoted by callers that are not careful; keep them plain.
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ParsedOutput:
    """The result of parsing one model output.

    Attributes:
        ok: True when the text is one JSON object that validates against the schema.
        value: the parsed object when ``ok``, else None.
        error: why parsing or validation failed (None when ``ok``), e.g.
            ``"not valid JSON: Expecting ',' delimiter (line 1, column 40)"`` or
            ``"count: -1 is less than the minimum of 0"``.
    """

    ok: bool
    value: dict[str, Any] | None = None
    error: str | None = None


def parse_structured(text: str, schema: dict[str, Any]) -> ParsedOutput:
    """Parse ``text`` as one JSON object and validate it against ``schema``.

    The text must be exactly one JSON document (surrounding whitespace allowed); code fences,
    prose around the JSON, ``NaN``/``Infinity`` and non-object values are failures.

    Args:
        text: the model output.
        schema: the prompt's JSON schema (``prompt.output.json_schema``).

    Returns:
        A ``ParsedOutput``; never raises for bad text.

    Raises:
        ValueError: ``schema`` itself is not a valid JSON schema (a configuration error).

    Example:
        >>> parse_structured('{"a": 1}', {"type": "object"}).value
        {'a': 1}
    """
    validator = _validator(_schema_key(schema))
    if not isinstance(text, str):
        return ParsedOutput(ok=False, error=f"expected text, got {type(text).__name__}")
    if not text.strip():
        return ParsedOutput(ok=False, error="empty output")
    try:
        # strict=False accepts raw control characters inside strings: grammar backends
        # (xgrammar) can emit them, and the value is still unambiguous.
        value = json.loads(text, parse_constant=_reject_constant, strict=False)
    except (json.JSONDecodeError, ValueError) as err:
        return ParsedOutput(ok=False, error=f"not valid JSON: {err}")
    except RecursionError:
        return ParsedOutput(ok=False, error="not valid JSON: nested too deeply")
    if not isinstance(value, dict):
        return ParsedOutput(
            ok=False, error=f"expected a JSON object, got {type(value).__name__}"
        )
    problem = best_match(validator.iter_errors(value))
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path) or "<root>"
        return ParsedOutput(ok=False, error=f"{where}: {problem.message}")
    return ParsedOutput(ok=True, value=value)


def check_schema(schema: dict[str, Any]) -> None:
    """Raise ValueError when ``schema`` is not a valid JSON schema (for driver-side checks)."""
    _validator(_schema_key(schema))


def non_portable_keywords(schema: Any) -> list[str]:
    """Sorted keywords in ``schema`` (at any depth) from ``NON_PORTABLE_KEYWORDS``.

    Property *names* are not keywords: a property called ``format`` is fine.
    """
    found: set[str] = set()
    _collect_keywords(schema, found)
    return sorted(found)


def structured_columns(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """``(column, Spark SQL type)`` for each top-level property of an object schema, in order.

    ``string`` (or a string enum) → STRING; ``integer`` → BIGINT; ``number`` → DOUBLE;
    ``boolean`` → BOOLEAN; an array of strings → ARRAY<STRING>; anything that allows several
    shapes (``anyOf``, a list of types, objects, mixed enums) → STRING holding JSON text.

    Raises:
        ValueError: the schema has no ``properties`` or a property name is not a plain
            identifier.

    Example:
        >>> structured_columns({"type": "object", "properties": {"n": {"type": "integer"}}})
        [('n', 'BIGINT')]
    """
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        raise ValueError("schema: structured columns need an object schema with 'properties'")
    columns = []
    for name, spec in properties.items():
        if not _COLUMN_NAME.match(name):
            raise ValueError(f"schema: property {name!r} is not a plain identifier for a column")
        columns.append((name, _column_type(spec)))
    return columns


def to_row_values(value: dict[str, Any] | None, schema: dict[str, Any]) -> dict[str, Any]:
    """Column values for one parsed output (``ParsedOutput.value``); all None when it is None.

    A property missing from ``value`` gives None. Call it on validated values only.

    Raises:
        ValueError: a value does not fit its column's type (the value was not validated).

    Example:
        >>> schema = {"type": "object", "properties": {"count": {"anyOf": [
        ...     {"type": "integer"}, {"enum": ["uncertain"]}]}}}
        >>> to_row_values({"count": 3}, schema), to_row_values({"count": "uncertain"}, schema)
        ({'count': '3'}, {'count': 'uncertain'})
    """
    columns = structured_columns(schema)
    if value is None:
        return {name: None for name, _ in columns}
    return {name: _column_value(name, kind, value.get(name)) for name, kind in columns}


def _column_type(spec: Any) -> str:
    if _is_string_schema(spec):
        return "STRING"
    if not isinstance(spec, dict) or "anyOf" in spec or "oneOf" in spec:
        return JSON_TEXT_TYPE
    kind = spec.get("type")
    if kind == "array":
        return STRING_ARRAY_TYPE if _is_string_schema(spec.get("items")) else JSON_TEXT_TYPE
    return _PLAIN_TYPES.get(kind, JSON_TEXT_TYPE) if isinstance(kind, str) else JSON_TEXT_TYPE


def _is_string_schema(spec: Any) -> bool:
    """True when every value the schema allows is a string (a plain string or string enum)."""
    if not isinstance(spec, dict) or "anyOf" in spec or "oneOf" in spec:
        return False
    enum = spec.get("enum")
    if enum is not None and not all(isinstance(v, str) for v in enum):
        return False
    return spec.get("type") == "string" or ("type" not in spec and enum is not None)


def _column_value(name: str, kind: str, item: Any) -> Any:
    if item is None:
        return None
    if kind == STRING_ARRAY_TYPE:
        if not isinstance(item, list) or not all(isinstance(s, str) for s in item):
            raise ValueError(f"{name}: expected a list of strings, got {item!r}")
        return list(item)
    expected = {"BIGINT": int, "DOUBLE": (int, float), "BOOLEAN": bool}.get(kind)
    if expected is not None:
        # bool is an int in Python; a JSON true must not become the integer 1.
        if not isinstance(item, expected) or (kind != "BOOLEAN" and isinstance(item, bool)):
            raise ValueError(f"{name}: expected {kind}, got {item!r}")
        return float(item) if kind == "DOUBLE" else item
    if isinstance(item, str):
        return item
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _collect_keywords(node: Any, found: set[str]) -> None:
    if isinstance(node, list):
        for child in node:
            _collect_keywords(child, found)
        return
    if not isinstance(node, dict):
        return
    for key, child in node.items():
        if key in ("properties", "$defs", "definitions") and isinstance(child, dict):
            for sub in child.values():
                _collect_keywords(sub, found)
            continue
        if key in NON_PORTABLE_KEYWORDS:
            found.add(key)
        if key not in ("enum", "const", "required", "description", "title", "examples"):
            _collect_keywords(child, found)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _schema_key(schema: dict[str, Any]) -> str:
    if not isinstance(schema, dict):
        raise ValueError(f"schema must be a mapping, got {type(schema).__name__}")
    return json.dumps(schema, sort_keys=True)


@lru_cache(maxsize=32)
def _validator(schema_json: str) -> Any:
    # Keyed by the schema's JSON text: building a validator per row costs more than the parse.
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as err:
        raise ValueError(f"invalid JSON schema: {err.message}") from err
    return cls(schema)
