"""The self-check audit's second pass: ask the model yes/no questions about its own claims,
with the image, and record per row the claims it does not confirm (``candid audit``).

``AuditTask`` is a ``udfs.runner.task.RunnerTask``: the same runner, Spark adapter, streamed
feeding and rebuild-once policy as describing. It differs in its two steps:

1. ``plan``: each row's claims become probes (``udfs.evaluation.selfcheck.probe_questions``):
   the claims of its structured output in JSON mode (read by the described prompt's declared
   claim fields, ``claim_fields``), of its text otherwise, plus control
   questions about objects absent by construction (the scene truth's, when the row has one)
   or, on real data, about vocabulary objects the description does not name. Each probe is one
   request: the versioned probe prompt file with the question in its instructions (which hold
   ``{question}``), on the row's image. The image is read and sized once per row; a row
   without probes is not read at all.
2. ``output_frame``: the answers back to their probes. A request that fails alone fails its row
   (``engine_error``); the image's own error status fails it too.

Every input row yields one output row: ``status`` ``ok`` with the answers, or the image's error
status, or ``engine_error``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pandas as pd
from pydantic import Field

from udfs.engines.base import Generation, PromptCall
from udfs.evaluation.scores import row_claims
from udfs.evaluation.selfcheck import (
    Probe,
    audit_answers,
    parse_yes_no,
    probe_questions,
)
from udfs.evaluation.vocabulary import OBJECTS
from udfs.images.prepare import STATUS_OK
from udfs.prompts import ClaimKind, PromptSpec
from udfs.runner.feeding import RequestOutcome, RowOutcome, RowPlan
from udfs.runner.task import RunnerTask

# Where the question goes in the probe prompt file's instructions.
QUESTION_PLACEHOLDER = "{question}"
STATUS_ENGINE_ERROR = "engine_error"
AUDIT_INPUT_COLUMNS = ("image_id", "path", "description", "structured_json", "json_mode",
                       "controls")
# Output columns and Spark SQL types (strings, so this module never imports Spark).
AUDIT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("image_id", "STRING"),
    ("status", "STRING"),
    ("status_message", "STRING"),
    ("n_claims", "INT"),
    ("unconfirmed", "ARRAY<STRING>"),
    ("denied", "ARRAY<STRING>"),
    ("n_controls", "INT"),
    ("control_yes", "ARRAY<STRING>"),
    # [{kind, claim, question, expected, answer, parsed, mean_logprob}], one per probe, in
    # probe order; mean_logprob: the answer tokens' mean log-probability (null: unknown).
    ("probes_json", "STRING"),
)
AUDIT_COLUMN_NAMES = tuple(name for name, _ in AUDIT_COLUMNS)


def audit_schema_ddl() -> str:
    """The output columns as a Spark DDL string (``mapInPandas(schema=...)``)."""
    return ", ".join(f"`{name}` {kind}" for name, kind in AUDIT_COLUMNS)


class AuditTask(RunnerTask):
    """Everything an executor needs to audit rows; built and validated on the driver."""

    input_columns: ClassVar[tuple[str, ...]] = AUDIT_INPUT_COLUMNS

    probe_prompt: PromptSpec = Field(
        ..., description="The probe prompt file (its instructions hold {question}); its "
        "sampling applies to every probe.",
    )
    n_controls: int = Field(2, ge=0, le=10, description="Control questions per row.")
    seed: int = Field(0, description="Picks the controls deterministically (with image_id).")
    claim_fields: dict[str, ClaimKind] | None = Field(
        None, description="The described prompt's claims declaration (PromptSpec.claims): "
        "how its JSON outputs are read; None for a text prompt.",
    )

    def plan(self, frame: pd.DataFrame) -> list[RowPlan]:
        """Each row's probes, one request per probe (the question in the probe prompt)."""
        plans = []
        for row in frame.itertuples(index=False):
            probes = row_probes(row, self)
            calls = tuple(PromptCall(probe_prompt(self.probe_prompt, p.question),
                                     self.probe_prompt.sampling) for p in probes)
            plans.append(RowPlan(calls, context=probes))
        return plans

    def output_frame(self, frame: pd.DataFrame, rows: list[RowOutcome]) -> pd.DataFrame:
        return _to_frame([_output_row(row, outcome)
                          for row, outcome in zip(frame.itertuples(index=False), rows,
                                                  strict=True)])


def check_probe_template(template: PromptSpec) -> None:
    """Raise ValueError unless ``template`` can be a probe prompt: text output, and its
    instructions hold ``{question}`` exactly once."""
    found = template.instructions.count(QUESTION_PLACEHOLDER)
    if found != 1:
        raise ValueError(f"probe prompt {template.key}: instructions must contain "
                         f"{QUESTION_PLACEHOLDER} exactly once, found {found}")
    if template.output.mode != "text":
        raise ValueError(f"probe prompt {template.key}: output.mode must be text")


def probe_prompt(template: PromptSpec, question: str) -> PromptSpec:
    """The prompt that asks ``question``: the template with the question in its instructions.

    Example:
        >>> t = PromptSpec(name="probe", version="v1", system="s", instructions="{question}")
        >>> probe_prompt(t, "Is there a mug in this image?").user_text()
        'Is there a mug in this image?'
    """
    instructions = template.instructions.replace(QUESTION_PLACEHOLDER, question)
    return template.model_copy(update={"instructions": instructions})


def row_probes(row: Any, task: AuditTask) -> list[Probe]:
    """The probes of one input row (a namedtuple with ``AUDIT_INPUT_COLUMNS``)."""
    if bool(row.json_mode) and task.claim_fields is None:
        raise ValueError("a JSON-mode row needs the prompt's claims declaration "
                         "(AuditTask.claim_fields)")
    fields = task.claim_fields if bool(row.json_mode) else None
    claims = row_claims(row.description, row.structured_json, fields)
    controls = _list(row.controls)
    absent = None if controls is None else [c for c in controls if c in OBJECTS]
    return probe_questions(claims, controls=absent, n_controls=task.n_controls, seed=task.seed,
                           key=str(row.image_id))


def _list(value: Any) -> list[str] | None:
    """A Spark array cell as a list (None, NaN and missing stay None)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return [str(v) for v in value]


def _output_row(row: Any, outcome: RowOutcome) -> dict[str, Any]:
    probes: list[Probe] = outcome.plan.context
    image = outcome.prepared
    base: dict[str, Any] = {name: None for name in AUDIT_COLUMN_NAMES}
    base.update(image_id=str(row.image_id), status=STATUS_OK)
    if image is not None and not image.ok:
        return {**base, "status": image.status, "status_message": image.message}
    results = [r.outcome if r is not None else None for r in outcome.outcomes]
    failed = [o for o in results if isinstance(o, BaseException)]
    if failed:
        return {**base, "status": STATUS_ENGINE_ERROR,
                "status_message": f"{row.path}: {type(failed[0]).__name__}: {failed[0]}"}
    texts = [o.text if isinstance(o, Generation) else None for o in results]
    result = audit_answers(probes, texts)
    detail = [{"kind": p.kind, "claim": p.claim, "question": p.question,
               "expected": p.expected, "answer": t, "parsed": parse_yes_no(t),
               "mean_logprob": _mean_logprob(r)}
              for p, t, r in zip(probes, texts, outcome.outcomes, strict=True)]
    return {**base, "n_claims": result.n_claims, "unconfirmed": list(result.unconfirmed),
            "denied": list(result.denied), "n_controls": result.n_controls,
            "control_yes": list(result.control_yes), "probes_json": json.dumps(detail)}


def _mean_logprob(result: RequestOutcome | None) -> float | None:
    if result is None or not isinstance(result.outcome, Generation):
        return None
    return result.outcome.mean_logprob


def _to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(AUDIT_COLUMN_NAMES))
    for name in ("n_claims", "n_controls"):
        frame[name] = frame[name].astype("Int64")
    return frame
