"""Describe image rows: load, check, generate, guard, and build result rows.

No Spark here: ``describe_batches`` maps pandas DataFrames to pandas DataFrames and gets its
engine from a provider function, so the same code runs in a pandas UDF, in a plain Python loop,
and in tests with a fake engine. Rows in == rows out, in input order: every input frame yields
one result frame with exactly one row per input row, ``status == "ok"`` or an error code and a
message. The engine is fed as a stream across frames (``udfs.runner.feeding``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pandas as pd
from pydantic import Field

from udfs.engines.base import Engine, Generation, RequestStream, generate_isolating_failures
from udfs.engines.cache import EngineFactory
from udfs.engines.stream import open_stream
from udfs.images.prepare import STATUS_OK, load_image
from udfs.outputs import guardrails
from udfs.outputs.structured import parse_structured, to_row_values
from udfs.prompts import PromptSpec
from udfs.runner.feeding import FeedStats, RowOutcome, feed_frames
from udfs.settings import (
    BatchSize,
    EngineSettings,
    ImageSettings,
    MaxWaitingImages,
    PrepThreads,
    SamplingSettings,
    StrictModel,
)

STATUS_ENGINE_ERROR = "engine_error"
INPUT_COLUMNS = ("image_id", "path")
# Optional input column: which attempt this is for the row (the job counts earlier failures).
ATTEMPTS_COLUMN = "attempts"

# Result columns and their Spark SQL types. Kept as strings so this module never imports Spark;
# the job turns them into the mapInPandas schema and the Delta table schema.
RESULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("image_id", "STRING"),
    ("path", "STRING"),
    ("prompt_name", "STRING"),
    ("prompt_version", "STRING"),
    ("prompt_hash", "STRING"),
    ("model", "STRING"),
    ("engine", "STRING"),
    ("status", "STRING"),
    ("status_message", "STRING"),
    ("description", "STRING"),
    ("finish_reason", "STRING"),
    ("prompt_tokens", "INT"),
    ("completion_tokens", "INT"),
    # Prompt tokens the engine served from its prefix cache (vLLM); None when it cannot say.
    ("cached_prompt_tokens", "INT"),
    # Submit -> finished for this request (it shares the engine with others meanwhile).
    ("latency_ms", "DOUBLE"),
    ("guardrail_flags", "ARRAY<STRING>"),
    # JSON-mode prompts: the validated output, one key per schema property
    # (udfs.outputs.structured); the job turns it into a typed `structured` struct column.
    ("structured_json", "STRING"),
    ("content_sha256", "STRING"),
    ("file_bytes", "BIGINT"),
    ("image_format", "STRING"),
    ("orig_width", "INT"),
    ("orig_height", "INT"),
    ("frames", "INT"),
    ("sharpness", "DOUBLE"),
    ("input_width", "INT"),
    ("input_height", "INT"),
    ("visual_tokens", "INT"),
    ("low_visibility", "BOOLEAN"),
    ("attempts", "INT"),
    # image_id whose result was copied to this row (identical bytes, see jobs/describe/dedup.py).
    ("reused_from", "STRING"),
    ("run_id", "STRING"),
    # What produced the row (prompt, sampling, model and revision, pixel bounds): udfs.fingerprint.
    ("run_fingerprint", "STRING"),
)
RESULT_COLUMN_NAMES = tuple(name for name, _ in RESULT_COLUMNS)
_INT_COLUMNS = tuple(name for name, kind in RESULT_COLUMNS if kind in ("INT", "BIGINT"))


def result_schema_ddl() -> str:
    """The result columns as a Spark DDL string, e.g. for ``mapInPandas(schema=...)``."""
    return ", ".join(f"`{name}` {kind}" for name, kind in RESULT_COLUMNS)


class DescribeTask(StrictModel):
    """Everything an executor needs to describe rows; built and validated on the driver."""

    engine: EngineSettings
    images: ImageSettings = Field(default_factory=ImageSettings)
    prompt: PromptSpec
    sampling: SamplingSettings = Field(..., description="Effective sampling for this run.")
    batch_size: BatchSize
    prep_threads: PrepThreads
    max_waiting_images: MaxWaitingImages
    run_id: str = Field("", description="Recorded on every row (the MLflow run id when known).")
    fingerprint: str = Field(
        "", description="Recorded on every row as run_fingerprint (empty: not recorded)."
    )
    make_engine: EngineFactory | None = Field(
        None, exclude=True,
        description="(EngineSettings, ImageSettings) -> Engine, pickled to the executors by "
        "reference (tests inject fakes here); None: the backend registry.",
    )


EngineProvider = Callable[[], Engine]
StatsCallback = Callable[[FeedStats], None]


def describe_batches(
    batches: Iterator[pd.DataFrame],
    task: DescribeTask,
    get_engine: EngineProvider,
    reset_engine: Callable[[], None] = lambda: None,
    on_stats: StatsCallback | None = None,
) -> Iterator[pd.DataFrame]:
    """Describe every row of every batch; yields one result frame per input frame, in order.

    Args:
        batches: frames with at least ``image_id`` and ``path`` (and optionally ``attempts``).
        task: settings for images, prompt, sampling, the engine and the feeding.
        get_engine: returns the (cached) engine; only called once an image decodes.
        reset_engine: discards the engine after a fatal error so ``get_engine`` builds anew.
        on_stats: called once with the partition's ``FeedStats`` after the last frame.
    """
    stats = FeedStats()
    outcomes = feed_frames(
        _checked(batches),
        connect=lambda: _open_stream(get_engine(), task),
        reset=reset_engine,
        load=partial(load_image, settings=task.images),
        prep_threads=task.prep_threads,
        max_waiting=task.max_waiting_images,
        stats=stats,
    )
    try:
        for frame, rows in outcomes:
            yield _result_frame(frame, rows, task)
    finally:
        # Stops the decoding threads and aborts requests in flight when the task is cancelled
        # or fails, not only when the generator is collected.
        outcomes.close()
    if on_stats is not None:
        on_stats(stats)


def describe_rows(
    frame: pd.DataFrame,
    task: DescribeTask,
    get_engine: EngineProvider,
    reset_engine: Callable[[], None] = lambda: None,
) -> pd.DataFrame:
    """One result row per input row of one frame, in input order."""
    (result,) = describe_batches(iter([frame]), task, get_engine, reset_engine)
    return result


def _checked(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for frame in batches:
        missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"input rows lack column(s) {missing}; got {list(frame.columns)}")
        yield frame


def _open_stream(engine: Engine, task: DescribeTask) -> RequestStream:
    return open_stream(engine, task.prompt, task.sampling)


def _result_frame(frame: pd.DataFrame, rows: list[RowOutcome], task: DescribeTask) -> pd.DataFrame:
    attempts = frame[ATTEMPTS_COLUMN] if ATTEMPTS_COLUMN in frame.columns else [1] * len(frame)
    results = [
        _result_row(image_id, path, row, task)
        for image_id, path, row in zip(frame["image_id"], frame["path"], rows, strict=True)
    ]
    for result, attempt in zip(results, attempts, strict=True):
        result[ATTEMPTS_COLUMN] = int(attempt) if pd.notna(attempt) else 1
    return _to_frame(results)


def _result_row(
    image_id: Any, path: Any, outcome_row: RowOutcome, task: DescribeTask
) -> dict[str, Any]:
    item, outcome = outcome_row.prepared, outcome_row.outcome
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
        row.update(
            status=STATUS_OK,
            description=outcome.text,
            finish_reason=outcome.finish_reason,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            cached_prompt_tokens=outcome.cached_prompt_tokens,
            latency_ms=outcome_row.latency_ms,
            guardrail_flags=guardrails.evaluate(
                outcome.text, outcome.finish_reason, task.prompt
            ),
            structured_json=_structured_json(outcome.text, task.prompt),
        )
    return {k: row[k] for k in RESULT_COLUMN_NAMES}


__all__ = [
    "RESULT_COLUMNS", "RESULT_COLUMN_NAMES", "DescribeTask", "describe_batches", "describe_rows",
    "generate_isolating_failures", "result_schema_ddl",
]


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
