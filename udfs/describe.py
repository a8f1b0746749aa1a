"""Describe a batch of image rows: load, check, generate, guard, and build result rows.

No Spark here: ``describe_batches`` maps pandas DataFrames to pandas DataFrames and gets its
engine from a provider function, so the same code runs in a pandas UDF, in a plain Python loop,
and in tests with a fake engine. Rows in == rows out, in input order: every input row yields
exactly one result row, with ``status == "ok"`` or an error code and a message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pandas as pd
from pydantic import Field

from udfs import guardrails
from udfs.outputs import parse_structured, to_row_values
from udfs.engines.base import Engine, EngineDeadError, Generation
from udfs.engines.cache import DEFAULT_FACTORY
from udfs.images import STATUS_OK, PreparedImage, load_image
from udfs.prompts import PromptSpec
from udfs.settings import EngineSettings, ImageSettings, SamplingSettings, StrictModel

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
    ("latency_ms", "DOUBLE"),
    ("guardrail_flags", "ARRAY<STRING>"),
    # JSON-mode prompts: the validated output, one key per schema property (udfs.outputs);
    # the job turns it into a typed `structured` struct column.
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
    # image_id whose result was copied to this row (identical bytes, see jobs/dedup.py).
    ("reused_from", "STRING"),
    ("run_id", "STRING"),
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
    batch_size: int = Field(16, ge=1, description="Images per engine.generate call.")
    run_id: str = Field("", description="Recorded on every row (the MLflow run id when known).")
    engine_factory: str = Field(
        DEFAULT_FACTORY, description="'module:function' building the engine; tests swap it."
    )


EngineProvider = Callable[[], Engine]


def describe_batches(
    batches: Iterator[pd.DataFrame],
    task: DescribeTask,
    get_engine: EngineProvider,
    reset_engine: Callable[[], None] = lambda: None,
) -> Iterator[pd.DataFrame]:
    """Describe every row of every batch; yields one result frame per ``task.batch_size`` rows.

    Args:
        batches: frames with at least ``image_id`` and ``path``.
        task: settings for images, prompt, sampling and the engine.
        get_engine: returns the (cached) engine; only called when a batch has valid images.
        reset_engine: discards the engine after a fatal error so ``get_engine`` builds anew.
    """
    for frame in batches:
        missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"input rows lack column(s) {missing}; got {list(frame.columns)}")
        for start in range(0, len(frame), task.batch_size):
            chunk = frame.iloc[start : start + task.batch_size]
            yield describe_rows(chunk, task, get_engine, reset_engine)


def describe_rows(
    frame: pd.DataFrame,
    task: DescribeTask,
    get_engine: EngineProvider,
    reset_engine: Callable[[], None] = lambda: None,
) -> pd.DataFrame:
    """One result row per input row, in input order."""
    prepared = [load_image(str(p) if p is not None else "", task.images) for p in frame["path"]]
    ready = [i for i, item in enumerate(prepared) if item.ok]
    outcomes: dict[int, Generation | BaseException] = {}
    latency_ms = None
    if ready:
        started = time.perf_counter()
        results = generate_with_recovery(
            [prepared[i].image for i in ready], task, get_engine, reset_engine
        )
        latency_ms = (time.perf_counter() - started) * 1000.0 / len(ready)
        outcomes = dict(zip(ready, results))
    attempts = frame[ATTEMPTS_COLUMN] if ATTEMPTS_COLUMN in frame.columns else [1] * len(frame)
    rows = [
        _result_row(image_id, path, item, outcomes.get(i), latency_ms, task)
        for i, (image_id, path, item) in enumerate(
            zip(frame["image_id"], frame["path"], prepared)
        )
    ]
    for row, attempt in zip(rows, attempts):
        row[ATTEMPTS_COLUMN] = int(attempt) if pd.notna(attempt) else 1
    return _to_frame(rows)


def generate_with_recovery(
    images: Sequence[Any],
    task: DescribeTask,
    get_engine: EngineProvider,
    reset_engine: Callable[[], None],
) -> list[Generation | BaseException]:
    """Generate for ``images``; a fatal engine error rebuilds the engine once and retries, a
    second one fails the task. Other errors are isolated to the rows that cause them."""
    try:
        return generate_isolating_failures(get_engine(), images, task.prompt, task.sampling)
    except EngineDeadError as first:
        reset_engine()
        try:
            return generate_isolating_failures(get_engine(), images, task.prompt, task.sampling)
        except EngineDeadError as second:
            reset_engine()
            raise RuntimeError(
                f"engine failed fatally twice in a row (first: {first}; then: {second}); "
                "failing the task so Spark can retry it on a fresh worker"
            ) from second


def generate_isolating_failures(
    engine: Engine, images: Sequence[Any], prompt: PromptSpec, sampling: SamplingSettings
) -> list[Generation | BaseException]:
    """``engine.generate``; if the batch raises, bisect it so that only the images that fail on
    their own get the exception, and every other image still gets its output.

    Fatal ``EngineDeadError`` is never isolated: it propagates.
    """
    try:
        outputs = engine.generate(images, prompt, sampling)
    except EngineDeadError:
        raise
    except Exception as err:  # noqa: BLE001 - any per-request failure; bisect to find the rows
        if len(images) == 1:
            return [err]
        middle = len(images) // 2
        return generate_isolating_failures(
            engine, images[:middle], prompt, sampling
        ) + generate_isolating_failures(engine, images[middle:], prompt, sampling)
    if len(outputs) != len(images):
        raise EngineDeadError(
            f"engine returned {len(outputs)} outputs for {len(images)} images; refusing to "
            "guess which output belongs to which row"
        )
    return list(outputs)


def _result_row(
    image_id: Any,
    path: Any,
    item: PreparedImage,
    outcome: Generation | BaseException | None,
    latency_ms: float | None,
    task: DescribeTask,
) -> dict[str, Any]:
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
            latency_ms=latency_ms,
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
