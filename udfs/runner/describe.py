"""Describe image rows: one request per row (the run's prompt on the row's image), its outcome
guarded and turned into a result row.

No Spark here: ``DescribeTask`` is a ``udfs.runner.task.RunnerTask``, so the same code runs in a
pandas UDF (``udfs.runner.spark_udf``), in a plain Python loop (``run_batches``), and in tests
with a fake engine. Rows in == rows out, in input order: every input frame yields one result
frame with exactly one row per input row, ``status == "ok"`` or an error code and a message.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pandas as pd
from pydantic import Field

from udfs.engines.base import Generation, PromptCall
from udfs.images.prepare import STATUS_OK
from udfs.outputs import guardrails
from udfs.outputs.structured import parse_structured, to_row_values
from udfs.prompts import PromptSpec
from udfs.runner.feeding import RowOutcome, RowPlan
from udfs.runner.task import RunnerTask
from udfs.settings import SamplingSettings

STATUS_ENGINE_ERROR = "engine_error"
INPUT_COLUMNS = ("image_id", "path")
# Optional input column: which attempt this is for the row (the job counts earlier failures).
ATTEMPTS_COLUMN = "attempts"

# The result columns, declared once: name, Spark SQL type, and the comment Delta stores with the
# column (a consumer's DESCRIBE TABLE explains it). Types are strings so that this module never
# imports Spark; the job turns them into the mapInPandas schema and the Delta table schema.
RESULT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("image_id", "STRING",
     "Stable id of the image (from the input table's key column or the path)."),
    ("path", "STRING",
     "Where the image was read from."),
    ("prompt_name", "STRING",
     "Prompt family (conf/prompts/<name>_<version>.yaml)."),
    ("prompt_version", "STRING",
     "Prompt version; with prompt_name, model and image_id the row's key."),
    ("prompt_hash", "STRING",
     "Hash of the rendered prompt text and its output schema."),
    ("model", "STRING",
     "Model id the row was described with (recorded id, not a local path)."),
    ("engine", "STRING",
     "Engine backend and version that produced the text (e.g. vllm 0.32.0)."),
    ("status", "STRING",
     "ok, or why the row has no description (decode_error, engine_error, ...)."),
    ("status_message", "STRING",
     "Human-readable detail of a non-ok status; null when ok."),
    ("description", "STRING",
     "The model's text (for JSON prompts, the raw JSON); null if not ok."),
    ("finish_reason", "STRING",
     "Why generation stopped: stop, length (truncated), ..."),
    ("prompt_tokens", "INT",
     "Tokens in the prompt, image tokens included."),
    ("completion_tokens", "INT",
     "Tokens generated."),
    ("cached_prompt_tokens", "INT",
     "Prompt tokens served from the engine's prefix cache; null when the engine cannot say."),
    ("latency_ms", "DOUBLE",
     "Milliseconds from submitting the request to the engine until it finished: queue wait, "
     "prefill and decoding, while the engine serves other requests too; null if not ok."),
    ("queue_wait_ms", "DOUBLE",
     "Milliseconds from submit until the engine first scheduled the request (vLLM: the step "
     "that first ran it; batch-wise engines: when its generate call began); part of "
     "latency_ms; null if not ok or unknown."),
    ("mean_logprob", "DOUBLE",
     "Mean natural-log probability of the generated tokens as the model scored them (before "
     "sampling penalties or a JSON grammar): a confidence signal, not a truth; null if not "
     "ok."),
    ("min_logprob", "DOUBLE",
     "Lowest natural-log probability among the generated tokens; null if not ok."),
    ("guardrail_flags", "ARRAY<STRING>",
     "Guardrail checks the text failed (udfs.outputs.guardrails); empty when none."),
    ("structured_json", "STRING",
     "JSON prompts: the validated output, one key per schema property (also typed in the "
     "structured column); null otherwise."),
    ("content_sha256", "STRING",
     "SHA-256 of the image file's bytes (identical files share one description)."),
    ("file_bytes", "BIGINT",
     "Size of the image file in bytes."),
    ("image_format", "STRING",
     "Decoded image format (JPEG, PNG, ...)."),
    ("orig_width", "INT",
     "Width of the image as stored, in pixels."),
    ("orig_height", "INT",
     "Height of the image as stored, in pixels."),
    ("frames", "INT",
     "Frames in the file (an animated image is described from its first)."),
    ("sharpness", "DOUBLE",
     "Variance of the Laplacian of the grey image: low means blurry."),
    ("input_width", "INT",
     "Width the model saw after resizing, in pixels."),
    ("input_height", "INT",
     "Height the model saw after resizing, in pixels."),
    ("visual_tokens", "INT",
     "Image tokens the model received."),
    ("low_visibility", "BOOLEAN",
     "True when the image is too small or blurry for details to be trusted."),
    ("attempts", "INT",
     "How many times this row has been described (retries included)."),
    ("reused_from", "STRING",
     "image_id whose result was copied to this row (identical bytes, "
     "jobs/describe/dedup.py); null otherwise."),
    ("run_id", "STRING",
     "MLflow run id of the describe run that wrote the row."),
    ("run_fingerprint", "STRING",
     "Hash of what produced the row: prompt, sampling, model and revision, image bounds "
     "(udfs.fingerprint; candid describe --explain shows its inputs)."),
)
RESULT_COLUMN_NAMES = tuple(name for name, _, _ in RESULT_COLUMNS)
_INT_COLUMNS = tuple(
    name for name, kind, _ in RESULT_COLUMNS if kind in ("INT", "BIGINT"))


def result_schema_ddl() -> str:
    """The result columns as a Spark DDL string, e.g. for ``mapInPandas(schema=...)``."""
    return ", ".join(f"`{name}` {kind}" for name, kind, _ in RESULT_COLUMNS)


class DescribeTask(RunnerTask):
    """Everything an executor needs to describe rows; built and validated on the driver."""

    input_columns: ClassVar[tuple[str, ...]] = INPUT_COLUMNS

    prompt: PromptSpec
    sampling: SamplingSettings = Field(..., description="Effective sampling for this run.")
    run_id: str = Field("", description="Recorded on every row (the MLflow run id when known).")
    fingerprint: str = Field(
        "", description="Recorded on every row as run_fingerprint (empty: not recorded)."
    )

    def plan(self, frame: pd.DataFrame) -> list[RowPlan]:
        """Every row asks one request: the run's prompt on its image."""
        one = RowPlan((PromptCall(self.prompt, self.sampling),))
        return [one] * len(frame)

    def output_frame(self, frame: pd.DataFrame, rows: list[RowOutcome]) -> pd.DataFrame:
        attempts = (frame[ATTEMPTS_COLUMN] if ATTEMPTS_COLUMN in frame.columns
                    else [1] * len(frame))
        results = [
            _result_row(image_id, path, row, self)
            for image_id, path, row in zip(frame["image_id"], frame["path"], rows, strict=True)
        ]
        for result, attempt in zip(results, attempts, strict=True):
            result[ATTEMPTS_COLUMN] = int(attempt) if pd.notna(attempt) else 1
        return _to_frame(results)


def _result_row(
    image_id: Any, path: Any, outcome_row: RowOutcome, task: DescribeTask
) -> dict[str, Any]:
    item, (request,) = outcome_row.prepared, outcome_row.outcomes
    assert item is not None  # describing asks one request per row, so every image is read
    outcome = request.outcome if request is not None else None
    row: dict[str, Any] = {name: None for name in RESULT_COLUMN_NAMES}
    row.update(item.metrics)
    row.update(
        image_id=None if image_id is None else str(image_id),
        path=None if path is None else str(path),
        prompt_name=task.prompt.name,
        prompt_version=task.prompt.version,
        prompt_hash=task.prompt.content_hash(),
        model=task.engine.recorded_model_id,
        engine=task.engine.backend,
        run_id=task.run_id,
        run_fingerprint=task.fingerprint or None,
        status=item.status,
        status_message=item.message,
        guardrail_flags=[],
    )
    if isinstance(outcome, BaseException):
        row.update(
            status=STATUS_ENGINE_ERROR,
            status_message=f"{path}: {type(outcome).__name__}: {outcome}",
        )
    elif isinstance(outcome, Generation):
        assert request is not None
        row.update(
            status=STATUS_OK,
            description=outcome.text,
            finish_reason=outcome.finish_reason,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            cached_prompt_tokens=outcome.cached_prompt_tokens,
            latency_ms=request.latency_ms,
            queue_wait_ms=request.queue_wait_ms,
            mean_logprob=outcome.mean_logprob,
            min_logprob=outcome.min_logprob,
            guardrail_flags=guardrails.evaluate(
                outcome.text, outcome.finish_reason, task.prompt
            ),
            structured_json=_structured_json(outcome.text, task.prompt),
        )
    return {k: row[k] for k in RESULT_COLUMN_NAMES}


def _structured_json(text: str, prompt: PromptSpec) -> str | None:
    """The validated JSON-mode output as column values, or None (text mode, or invalid: the
    invalid_json guardrail then says why not)."""
    schema = prompt.output.json_schema
    if prompt.output.mode != "json" or schema is None:
        return None
    parsed = parse_structured(text, schema)
    return json.dumps(to_row_values(parsed.value, schema)) if parsed.ok else None


def _to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMN_NAMES))
    for name in _INT_COLUMNS:
        frame[name] = frame[name].astype("Int64")
    return frame
