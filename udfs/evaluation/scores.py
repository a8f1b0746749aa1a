"""Grounding scores of result rows against known truth, per prompt version and model, with
confidence intervals and paired verdicts between versions (``candid eval score``).

No Spark here: the job collects result rows joined with their scene's truth (a few thousand at
most: the synthetic eval set is small by design) and hands them to ``score_groups``.

What a row claims: a free-text row is read with ``udfs.evaluation.claims.extract_claims``; a
JSON-mode row with ``extract_claims_json`` on its ``structured_json`` column, field by field as
its prompt declares (``PromptSpec.claims``: the caller passes each JSON prompt's declaration;
a group with JSON outputs and no declaration is an error, never a silently empty score). That
column stores table values (``udfs.outputs.structured.to_row_values``: a count of 3 as the text
``'3'``, a colour list as JSON text), so ``structured_value`` turns them back into JSON values
first. A JSON-mode row whose output was not valid JSON claims nothing; how often that happens
is the ``json_invalid`` rate.

Confidence: when the rows carry per-row token log-probabilities (``CONFIDENCE_COLUMNS``, on
results tables written since they exist), each group also reports how well each separates the
descriptions with a hallucination from the others (AUROC with its interval), next to the
precision and recall of the guardrails (any flag) for the same labels
(``udfs.evaluation.separation``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from udfs.evaluation.ab import (
    DEFAULT_SETTINGS,
    Arrays,
    IntervalSettings,
    PairedVerdict,
    aligned,
    paired_verdict,
    rate_ci,
)
from udfs.evaluation.claims import Claims, extract_claims, extract_claims_json
from udfs.evaluation.grounding import ROW_METRICS, RowScore, score_claims
from udfs.evaluation.intervals import RateCI
from udfs.evaluation.separation import FlagAgreement, auroc_interval, flag_agreement

# Only these stored strings are read back as JSON values: lists, objects and integers (what
# to_row_values writes as JSON text). Any other string was stored as itself ("uncertain").
_JSON_TEXT = re.compile(r"^\s*(?:\[.*\]|\{.*\}|-?\d+)\s*$", re.DOTALL)
JSON_INVALID = "json_invalid"
# The guardrail flag of a JSON-mode output that did not validate (udfs.outputs.guardrails).
INVALID_JSON_FLAG = "invalid_json"
# The metrics a verdict prints first, in this order (every metric is logged).
HEADLINE_METRICS = ("hallucination_per_description", "hallucination_per_mention",
                    "count_correct", "count_wrong", "count_abstain", "scope_violation",
                    "coverage")
# What a metric's denominator counts, where it is not one row per image.
METRIC_UNITS = {"hallucination_per_mention": "judged mentions",
                "count_accuracy_when_stated": "rows stating a count",
                "color_error": "colour mentions"}
# Per-row confidence columns (token log-probabilities: low is suspicious), when present.
CONFIDENCE_COLUMNS = ("mean_logprob", "min_logprob")
# Output field -> claim kind of one JSON prompt (``PromptSpec.claims``).
ClaimFields = Mapping[str, str]


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


def row_claims(description: str | None, structured_json: str | None,
               fields: ClaimFields | None) -> Claims:
    """What one result row claims: its structured output read by the prompt's claims
    declaration ``fields`` in JSON mode, else (``fields`` None) its text."""
    if fields is not None:
        return extract_claims_json(structured_value(structured_json), fields)
    return extract_claims(description)


@dataclass(frozen=True)
class ScoredRow:
    """One ok result row of a group, scored.

    Attributes:
        flagged: the row carries a guardrail flag.
        confidence: each ``CONFIDENCE_COLUMNS`` value the row has (missing or null: absent).
    """

    image_id: str
    score: RowScore
    json_invalid: bool = False
    flagged: bool = False
    confidence: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupScores:
    """One prompt version on one model: every scored row, its rates and their intervals.

    Attributes:
        prompt: ``prompt_name/prompt_version``; ``model``: the model id.
        label: a short name for reports (the prompt version when it is unambiguous).
        json_mode: its rows were scored from their structured output.
        rows: the ok rows with truth, scored, sorted by image id.
        failed: result rows with truth that are not ok (no output to score).
        rates: each defined rate with its interval (``ROW_METRICS`` names, plus
            ``json_invalid`` in JSON mode).
        separation: AUROC of each confidence column the rows carry, for hallucinated rows.
        guardrails: the guardrails' (any flag) precision and recall for hallucinated rows.
    """

    prompt: str
    model: str
    label: str
    json_mode: bool
    rows: tuple[ScoredRow, ...]
    failed: int
    rates: Mapping[str, RateCI] = field(default_factory=dict)
    separation: Mapping[str, RateCI | None] = field(default_factory=dict)
    guardrails: FlagAgreement | None = None

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
    records: Iterable[Mapping[str, Any]], declarations: Mapping[str, ClaimFields] | None = None,
    settings: IntervalSettings = DEFAULT_SETTINGS,
) -> list[GroupScores]:
    """Score result rows joined with truth, per (prompt, model), sorted by prompt and model.

    Args:
        records: dicts with ``image_id``, ``prompt_name``, ``prompt_version``, ``model``,
            ``status``, ``description``, ``structured_json``, ``guardrail_flags`` and
            ``truth`` (the scene's truth dict); ``CONFIDENCE_COLUMNS`` when the table has them.
        declarations: ``name/version`` -> the claims declaration of each JSON prompt; a
            prompt not named here is read as text.
        settings: interval settings.

    Raises:
        ValueError: a group has JSON outputs but no declaration, or an output field its
            declaration does not name.
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        key = (f"{record['prompt_name']}/{record['prompt_version']}", str(record["model"]))
        groups.setdefault(key, []).append(record)
    keys = sorted(groups)
    labels = _labels(keys)
    return [_score_group(key, labels[key], groups[key], (declarations or {}).get(key[0]),
                         settings) for key in keys]


def _has_json_outputs(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Any row has a structured output or failed JSON validation."""
    return any(r.get("structured_json") or INVALID_JSON_FLAG in (r.get("guardrail_flags") or ())
               for r in rows)


def _scored_row(r: Mapping[str, Any], fields: ClaimFields | None) -> ScoredRow:
    try:
        claims = row_claims(r.get("description"), r.get("structured_json"), fields)
    except ValueError as err:
        raise ValueError(f"{r['prompt_name']}/{r['prompt_version']}, image {r['image_id']}: "
                         f"{err}") from None
    confidence = {c: float(r[c]) for c in CONFIDENCE_COLUMNS
                  if r.get(c) is not None and r[c] == r[c]}
    return ScoredRow(image_id=str(r["image_id"]), score=score_claims(claims, r["truth"]),
                     json_invalid=fields is not None and not r.get("structured_json"),
                     flagged=bool(r.get("guardrail_flags")), confidence=confidence)


def _score_group(key: tuple[str, str], label: str, rows: Sequence[Mapping[str, Any]],
                 fields: ClaimFields | None, settings: IntervalSettings) -> GroupScores:
    if fields is None and _has_json_outputs(rows):
        raise ValueError(f"{key[0]} has JSON outputs, but no claims declaration was given for "
                         "it: the prompt file that made them is needed to read their claims")
    json_mode = fields is not None
    ok = sorted((r for r in rows if r.get("status") == "ok"), key=lambda r: str(r["image_id"]))
    scored = tuple(_scored_row(r, fields) for r in ok)
    metrics = [*ROW_METRICS, *([JSON_INVALID] if json_mode else [])]
    rates = {m: ci for m in metrics if (ci := rate_ci(_arrays(_values(scored, m)), settings))}
    labels = [r.score.has_hallucination for r in scored]
    separation = {c: auroc_interval([r.confidence.get(c, math.nan) for r in scored], labels,
                                    higher_is_suspicious=False, confidence=settings.confidence)
                  for c in CONFIDENCE_COLUMNS if any(c in r.confidence for r in scored)}
    guardrails = flag_agreement([r.flagged for r in scored], labels, settings.confidence)
    return GroupScores(key[0], key[1], label, json_mode, scored, len(rows) - len(ok), rates,
                       separation, guardrails if scored else None)


def paired_verdicts(a: GroupScores, b: GroupScores,
                    settings: IntervalSettings = DEFAULT_SETTINGS) -> list[PairedVerdict]:
    """B against A for every metric both define, on the images both scored (headline metrics
    first); McNemar and the sample-size figures for the yes/no-per-image metrics."""
    metrics = [m for m in ROW_METRICS if m in a.rates and m in b.rates]
    metrics.sort(key=lambda m: (HEADLINE_METRICS.index(m) if m in HEADLINE_METRICS
                                else len(HEADLINE_METRICS)))
    out = []
    for metric in metrics:
        arrays_a, arrays_b = aligned(a.values(metric), b.values(metric))
        verdict = paired_verdict(metric, (a.label, arrays_a), (b.label, arrays_b), settings,
                                 METRIC_UNITS.get(metric, "images"))
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

