"""The self-check audit's second pass: ask the model yes/no questions about its own claims,
with the image, and record per row the claims it does not confirm (``candid audit``).

No Spark here but the ``mapInPandas`` adapter at the bottom (GPU pinning and the worker's cached
engine, as ``udfs.runner.spark_udf`` does for describing). Per input frame:

1. each row's claims become probes (``udfs.evaluation.selfcheck.probe_questions``): the claims of
its
   structured output in JSON mode, of its text otherwise, plus control questions about objects
   absent by construction (the scene truth's, when the row has one) or, on real data, about
   vocabulary objects the description does not name;
2. each image is read and sized once (``udfs.images.prepare.load_image``);
3. ``Engine.generate`` takes one prompt per call, so requests are grouped by question: one
   prompt per distinct question, made from the versioned probe prompt file (its instructions
   hold ``{question}``), and one ``generate`` call with every image of the frame that question
   is asked about. A request that fails alone fails its row (``engine_error``), found by
   bisection; a dead engine is rebuilt once, a second death fails the task.

Every input row yields one output row: ``status`` ``ok`` with the answers, or the image's error
status, or ``engine_error``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pandas as pd
from pydantic import Field

from udfs.engines import cache
from udfs.engines.base import EngineDeadError, Generation, generate_isolating_failures
from udfs.engines.cache import EngineFactory
from udfs.evaluation.scores import row_claims
from udfs.evaluation.selfcheck import (
    Probe,
    audit_answers,
    parse_yes_no,
    probe_questions,
)
from udfs.evaluation.vocabulary import OBJECTS
from udfs.images.prepare import STATUS_OK, PreparedImage, load_image
from udfs.prompts import ClaimKind, PromptSpec
from udfs.settings import EngineSettings, ImageSettings, StrictModel

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
    # [{kind, claim, question, expected, answer, parsed}], one per probe, in probe order.
    ("probes_json", "STRING"),
)
AUDIT_COLUMN_NAMES = tuple(name for name, _ in AUDIT_COLUMNS)
EngineProvider = Callable[[], Any]


def audit_schema_ddl() -> str:
    """The output columns as a Spark DDL string (``mapInPandas(schema=...)``)."""
    return ", ".join(f"`{name}` {kind}" for name, kind in AUDIT_COLUMNS)


class AuditTask(StrictModel):
    """Everything an executor needs to audit rows; built and validated on the driver."""

    engine: EngineSettings
    images: ImageSettings = Field(default_factory=ImageSettings)
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
    make_engine: EngineFactory | None = Field(
        None, exclude=True,
        description="(EngineSettings, ImageSettings) -> Engine, pickled to the executors by "
        "reference (tests inject fakes here); None: the backend registry.",
    )


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


def audit_frame(frame: pd.DataFrame, task: AuditTask, get_engine: EngineProvider,
                reset_engine: Callable[[], None] = lambda: None) -> pd.DataFrame:
    """One output row per input row, in input order (module docstring for the steps)."""
    missing = [c for c in AUDIT_INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"audit rows lack column(s) {missing}; got {list(frame.columns)}")
    rows = list(frame.itertuples(index=False))
    probes = [row_probes(row, task) for row in rows]
    images = [load_image(str(row.path), task.images) if asked else None
              for row, asked in zip(rows, probes, strict=True)]
    answers = _ask(probes, images, task, get_engine, reset_engine)
    out = [_output_row(row, p, img, a)
           for row, p, img, a in zip(rows, probes, images, answers, strict=True)]
    return _to_frame(out)


Outcome = Generation | BaseException | None


def _ask(probes: Sequence[Sequence[Probe]], images: Sequence[PreparedImage | None],
         task: AuditTask, get_engine: EngineProvider,
         reset_engine: Callable[[], None]) -> list[list[Outcome]]:
    """Every probe's outcome, asked one distinct question at a time over the frame's images."""
    answers: list[list[Outcome]] = [[None] * len(p) for p in probes]
    by_question: dict[str, list[tuple[int, int]]] = {}
    for i, (row_probes_, image) in enumerate(zip(probes, images, strict=True)):
        if image is not None and image.ok:
            for j, probe in enumerate(row_probes_):
                by_question.setdefault(probe.question, []).append((i, j))
    for question, where in by_question.items():
        prompt = probe_prompt(task.probe_prompt, question)
        batch = [images[i].image for i, _ in where]
        outcomes = _generate(batch, prompt, task, get_engine, reset_engine)
        for (i, j), outcome in zip(where, outcomes, strict=True):
            answers[i][j] = outcome
    return answers


def _generate(images: list[Any], prompt: PromptSpec, task: AuditTask,
              get_engine: EngineProvider, reset_engine: Callable[[], None]) -> list[Outcome]:
    """``generate`` with failing requests isolated; a dead engine is rebuilt once."""
    try:
        return list(generate_isolating_failures(get_engine(), images, prompt,
                                                task.probe_prompt.sampling))
    except EngineDeadError as first:
        reset_engine()
        try:
            return list(generate_isolating_failures(get_engine(), images, prompt,
                                                    task.probe_prompt.sampling))
        except EngineDeadError as second:
            raise RuntimeError(f"engine failed fatally twice in a row (first: {first}; then: "
                               f"{second}); failing the task so Spark can retry it") from second


def _output_row(row: Any, probes: list[Probe], image: PreparedImage | None,
                outcomes: list[Outcome]) -> dict[str, Any]:
    base: dict[str, Any] = {name: None for name in AUDIT_COLUMN_NAMES}
    base.update(image_id=str(row.image_id), status=STATUS_OK)
    if image is not None and not image.ok:
        return {**base, "status": image.status, "status_message": image.message}
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        return {**base, "status": STATUS_ENGINE_ERROR,
                "status_message": f"{row.path}: {type(failed[0]).__name__}: {failed[0]}"}
    texts = [o.text if isinstance(o, Generation) else None for o in outcomes]
    result = audit_answers(probes, texts)
    detail = [{"kind": p.kind, "claim": p.claim, "question": p.question,
               "expected": p.expected, "answer": t, "parsed": parse_yes_no(t)}
              for p, t in zip(probes, texts, strict=True)]
    return {**base, "n_claims": result.n_claims, "unconfirmed": list(result.unconfirmed),
            "denied": list(result.denied), "n_controls": result.n_controls,
            "control_yes": list(result.control_yes), "probes_json": json.dumps(detail)}


def _to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(AUDIT_COLUMN_NAMES))
    for name in ("n_claims", "n_controls"):
        frame[name] = frame[name].astype("Int64")
    return frame


def audit_partition(batches: Iterator[pd.DataFrame], task: AuditTask) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` function: pin the task's GPU, then audit each frame with the worker's
    cached engine (the same cache, so the describe job's engine is reused when it matches)."""
    from udfs.engines.gpu import pin_task_gpus

    pin_task_gpus()
    for frame in batches:
        yield audit_frame(
            frame, task,
            get_engine=lambda: cache.get_engine(task.engine, task.images, task.make_engine),
            reset_engine=lambda: cache.discard_engine(task.engine, task.images, task.make_engine),
        )

