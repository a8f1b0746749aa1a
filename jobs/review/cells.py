"""One output cell of the review page: the description (prose as written, a JSON-mode output as
a table of its fields), error status, guardrail flags, finish reason and, in labelling mode,
the verdict buttons. Everything the model wrote is HTML-escaped here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jobs.review.html_text import escape as _e
from jobs.review.html_text import words
from jobs.review.labelling import label_key, verdict_buttons
from jobs.review.rows import PromptOutput, json_object
from udfs.outputs.guardrails import GUARDRAIL_DESCRIPTIONS

# Shown for flag ids this code does not know (rows written by another version).
UNKNOWN_FLAG = "Unknown guardrail id (written by another version of Candid)."
# Nested JSON deeper than this is shown as text: a page must render whatever a model wrote.
MAX_FIELD_DEPTH = 4


def output_cell(prompt_key: str, out: PromptOutput | None, labelling: bool = False) -> str:
    """The ``<td>`` of one prompt's output for one image. With ``labelling``, an ok output
    whose result key is known gets the verdict buttons and its key as ``data-label-key``."""
    if out is None:
        return f'<td class="output missing" data-prompt="{_e(prompt_key)}">no result</td>'
    parts = []
    if not out.ok:
        parts.append(
            f'<span class="badge status-error" data-status="{_e(out.status)}" '
            f'title="{_e(out.status_message or "")}">{_e(out.status)}</span>'
        )
    if out.description:
        parts.append(_description(out))
    parts.extend(flag_badge(flag) for flag in out.flags)
    if out.finish_reason:
        parts.append(f'<div class="finish">finish: {_e(out.finish_reason)}</div>')
    key_attr = ""
    if labelling and out.ok and out.key is not None:
        parts.append(verdict_buttons())
        key_attr = f' data-label-key="{_e(label_key(out.key))}"'
    return f'<td class="output" data-prompt="{_e(prompt_key)}"{key_attr}>{"".join(parts)}</td>'


def flag_badge(flag: str) -> str:
    tip = GUARDRAIL_DESCRIPTIONS.get(flag, UNKNOWN_FLAG)
    return f'<span class="badge flag" data-flag="{_e(flag)}" title="{_e(tip)}">{_e(flag)}</span>'


def _description(out: PromptOutput) -> str:
    """A JSON object (the validated ``structured_json``, else the text when it is one) as a
    field table; anything else, broken JSON included, exactly as written."""
    fields = out.fields if out.fields is not None else json_object(out.description)
    if fields:
        return field_table(fields)
    return f'<pre class="desc">{_e(out.description)}</pre>'


def field_table(fields: Mapping[str, Any], depth: int = 0) -> str:
    """A JSON object as a two-column table: the field in words, its value readable.

    Example:
        >>> html = field_table({"visible_features": ["handle"], "count": None})
        >>> "<th>visible features</th><td><ul class='values'><li>handle</li>" in html
        True
    """
    rows = "".join(
        f'<tr data-field="{_e(name)}"><th>{_e(words(str(name)))}</th>'
        f"<td>{_field_value(value, depth + 1)}</td></tr>"
        for name, value in fields.items()
    )
    return f'<table class="fields">{rows}</table>'


def _field_value(value: Any, depth: int) -> str:
    if value is None:
        return '<span class="none">none</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping) and depth < MAX_FIELD_DEPTH:
        return field_table(value, depth) if value else '<span class="none">none</span>'
    if isinstance(value, list) and depth < MAX_FIELD_DEPTH:
        if not value:
            return '<span class="none">none</span>'
        items = "".join(f"<li>{_field_value(item, depth + 1)}</li>" for item in value)
        return f"<ul class='values'>{items}</ul>"
    if isinstance(value, (Mapping, list)):
        return _e(json.dumps(value, ensure_ascii=False))
    return _e(value)
