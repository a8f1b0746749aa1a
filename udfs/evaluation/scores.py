"""Grounding scores of result rows against known truth, per prompt version and model, with
confidence intervals and paired verdicts between versions (``candid eval score``).

No Spark here: the job collects result rows joined with their scene's truth (a few thousand at
most: the synthetic eval set is small by design) and hands them to ``score_groups``.

What a row claims: a free-text row is read with ``udfs.evaluation.grounding.extract_claims``; a
JSON-mode row (its group has structured outputs) with ``extract_claims_json`` on its
``structured_json`` column. That column stores table values
(``udfs.outputs.structured.to_row_values``: a count of 3 as the text ``'3'``, a colour list as JSON
text), so ``structured_value`` turns them back into JSON values first. A JSON-mode row whose output
was not valid JSON claims nothing; how often that happens is the ``json_invalid`` rate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from udfs.evaluation.ab import (
    DEFAULT_BOOTSTRAP,
    Arrays,
    BootstrapSettings,
    PairedVerdict,
    aligned,
    paired_verdict,
    rate_ci,
)
from udfs.evaluation.grounding import (
    BINARY_METRICS,
    ROW_METRICS,
    Claims,
    RowScore,
    extract_claims,
    extract_claims_json,
    score_claims,
)
from udfs.evaluation.stats import RateCI

# Only these stored strings are read back as JSON values: lists, objects and integers (what
# to_row_values writes as JSON text). Any other string was stored as itself ("uncertain").
_JSON_TEXT = re.compile(r"^\s*(?:\[.*\]|\{.*\}|-?\d+)\s*$", re.DOTALL)
JSON_INVALID = "json_invalid"
# The metrics a verdict prints first, in this order (every metric is logged).
HEADLINE_METRICS = ("hallucination_per_description", "hallucination_per_mention",
                    "count_correct", "count_wrong", "count_abstain", "scope_violation",
                    "coverage")


def structured_value(structured_json: str | None) -> dict[str, Any] | None:
    """The JSON-mode output as the model wrote it, from the ``structured_json`` column.

    Example:
        >>> stored = {"count": "3", "colors": '["red"]', "subject": "a mug", "n": "uncertain"}
        >>> structured_value(json.dumps(stored))
        {'count': 3, 'colors': ['red'], 'subject': 'a mug', 'n': 'uncertain'}
        >>> structured_value(None) is None
        True
    """
    if not structured_json:
        return None
    try:
        stored = json.loads(structured_json)
    except ValueError:
        return None
    if not isinstance(stored, dict):
        return None
    return {k: _json_text_value(v) for k, v in stored.items()}


def _json_text_value(value: Any) -> Any:
    if isinstance(value, str) and _JSON_TEXT.match(value):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def row_claims(description: str | None, structured_json: str | None, json_mode: bool) -> Claims:
    """What one result row claims: its structured output in JSON mode, else its text."""
    if json_mode:
        return extract_claims_json(structured_value(structured_json))
    return extract_claims(description)


@dataclass(frozen=True)
class ScoredRow:
    """One ok result row of a group, scored."""

    image_id: str
    score: RowScore
    json_invalid: bool = False


@dataclass(frozen=True)
class GroupScores:
    """One prompt version on one model: every scored row, its rates and their intervals.

    Attributes:
        prompt: ``prompt_name/prompt_version``; ``model``: the model id.
        label: a short name for reports (the prompt version when it is unambiguous).
        json_mode: its rows were scored from their structured output.
        rows: the ok rows with truth, scored, sorted by image id.
        failed: result rows with truth that are not ok (no output to score).
        rates: each defined rate with its bootstrap interval (``ROW_METRICS`` names, plus
            ``json_invalid`` in JSON mode).
    """

    prompt: str
    model: str
    label: str
    json_mode: bool
    rows: tuple[ScoredRow, ...]
    failed: int
    rates: Mapping[str, RateCI] = field(default_factory=dict)

    def values(self, metric: str) -> dict[str, tuple[float, float] | None]:
        """Per image id: (numerator, denominator) of ``metric``, None where undefined."""
        return _values(self.rows, metric)


def _values(rows: Iterable[ScoredRow], metric: str) -> dict[str, tuple[float, float] | None]:
    if metric == JSON_INVALID:
        return {r.image_id: (float(r.json_invalid), 1.0) for r in rows}
    return {r.image_id: ROW_METRICS[metric](r.score) for r in rows}


def _arrays(values: Mapping[str, tuple[float, float] | None]) -> Arrays:
    defined = [v for v in values.values() if v is not None]
    return [v[0] for v in defined], [v[1] for v in defined]


def _labels(keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The prompt version alone when it names each group; else prompt and model."""
    versions = [prompt.rsplit("/", 1)[-1] for prompt, _ in keys]
    if len(set(versions)) == len(keys):
        return dict(zip(keys, versions, strict=True))
    return {key: f"{key[0]} on {key[1]}" for key in keys}


def score_groups(
    records: Iterable[Mapping[str, Any]], settings: BootstrapSettings = DEFAULT_BOOTSTRAP
) -> list[GroupScores]:
    """Score result rows joined with truth, per (prompt, model), sorted by prompt and model.

    Args:
        records: dicts with ``image_id``, ``prompt_name``, ``prompt_version``, ``model``,
            ``status``, ``description``, ``structured_json``, ``guardrail_flags`` and
            ``truth`` (the scene's truth dict).
        settings: bootstrap settings for the intervals.
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        key = (f"{record['prompt_name']}/{record['prompt_version']}", str(record["model"]))
        groups.setdefault(key, []).append(record)
    keys = sorted(groups)
    labels = _labels(keys)
    return [_score_group(key, labels[key], groups[key], settings) for key in keys]


def _is_json_mode(rows: Sequence[Mapping[str, Any]]) -> bool:
    """A group is JSON mode when any of its rows has a structured output or failed JSON."""
    return any(r.get("structured_json") or "invalid_json" in (r.get("guardrail_flags") or ())
               for r in rows)


def _score_group(key: tuple[str, str], label: str, rows: Sequence[Mapping[str, Any]],
                 settings: BootstrapSettings) -> GroupScores:
    json_mode = _is_json_mode(rows)
    ok = sorted((r for r in rows if r.get("status") == "ok"), key=lambda r: str(r["image_id"]))
    scored = tuple(
        ScoredRow(
            image_id=str(r["image_id"]),
            score=score_claims(row_claims(r.get("description"), r.get("structured_json"),
                                          json_mode), r["truth"]),
            json_invalid=json_mode and not r.get("structured_json"),
        )
        for r in ok
    )
    metrics = [*ROW_METRICS, *([JSON_INVALID] if json_mode else [])]
    rates = {m: ci for m in metrics if (ci := rate_ci(_arrays(_values(scored, m)), settings))}
    return GroupScores(key[0], key[1], label, json_mode, scored, len(rows) - len(ok), rates)


def paired_verdicts(a: GroupScores, b: GroupScores,
                    settings: BootstrapSettings = DEFAULT_BOOTSTRAP) -> list[PairedVerdict]:
    """B against A for every metric both define, on the images both scored (headline metrics
    first); McNemar for the yes/no-per-image metrics."""
    metrics = [m for m in ROW_METRICS if m in a.rates and m in b.rates]
    metrics.sort(key=lambda m: (HEADLINE_METRICS.index(m) if m in HEADLINE_METRICS
                                else len(HEADLINE_METRICS)))
    out = []
    for metric in metrics:
        arrays_a, arrays_b = aligned(a.values(metric), b.values(metric))
        verdict = paired_verdict(metric, (a.label, arrays_a), (b.label, arrays_b),
                                 binary=metric in BINARY_METRICS, settings=settings)
        if verdict is not None:
            out.append(verdict)
    return out


def all_pairs(groups: Sequence[GroupScores]) -> list[tuple[GroupScores, GroupScores]]:
    """Every (earlier, later) pair of groups that share at least one scored image."""
    pairs = []
    for i, a in enumerate(groups):
        ids = {r.image_id for r in a.rows}
        pairs += [(a, b) for b in groups[i + 1:] if ids & {r.image_id for r in b.rows}]
    return pairs


def per_image_records(groups: Sequence[GroupScores]) -> list[dict[str, Any]]:
    """One JSON-safe dict per scored row (the per-image table logged to MLflow)."""
    return [
        {"image_id": r.image_id, "prompt": g.prompt, "model": g.model,
         "json_invalid": r.json_invalid, **r.score.to_record()}
        for g in groups for r in g.rows
    ]

