"""The describe job: input Delta table -> vLLM (or transformers) in pandas UDFs -> results table.

Run it as ``candid describe --config conf/demo.yaml`` or
``spark-submit jobs/describe.py --config conf/<file>.yaml``.

The input is processed in chunks (a hash of ``image_id``); each chunk is staged, MERGEd and
committed before the next starts (``jobs.results``), so a crash costs at most one chunk, and a
rerun only processes rows that have no final result yet.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from jobs.config import ConfigError, DescribeConfig
from jobs.console import Reporter
from jobs.progress import RowProgress, StatusCountsParam, counting_statuses, polling
from jobs.delta_io import delta_table, latest_version, read_table
from jobs import dedup
from jobs import results as results_io
from jobs.tracking import RunTracker, redact, redact_text
from udfs import guardrails
from udfs.describe import DescribeTask, result_schema_ddl
from udfs.outputs import structured_columns
from udfs.prompts import PromptSpec, find_prompt
from udfs.spark_udf import make_describe_fn

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("candid.describe")


@dataclass
class DescribeSummary:
    """What a describe run did; printed by the CLI and logged to MLflow."""

    run_id: str
    results_table: str
    input_table: str
    input_version: int
    prompt: str
    prompt_hash: str
    model: str
    rows_in: int = 0
    rows_pending: int = 0
    rows_processed: int = 0
    rows_recovered: int = 0
    rows_reused: int = 0
    chunks: int = 0
    seconds: float = 0.0
    status_counts: dict[str, int] = field(default_factory=dict)
    flag_counts: dict[str, int] = field(default_factory=dict)
    tracking_failures: list[str] = field(default_factory=list)
    table_status_counts: dict[str, int] = field(default_factory=dict)
    registered_prompt: str | None = None

    @property
    def rows_ok(self) -> int:
        return self.status_counts.get("ok", 0)

    @property
    def images_per_s(self) -> float:
        return self.rows_processed / self.seconds if self.seconds > 0 else 0.0


class FlagRateExceeded(RuntimeError):
    """Guardrail flag rates above ``max_flag_rate``; raised after the results are written."""


def resolve_prompt(config: DescribeConfig) -> PromptSpec:
    """The prompt spec the config names, checked against the guardrail registry.

    Raises:
        ConfigError: the prompt cannot be found or names guardrails that cannot work.
    """
    ref = config.prompt
    try:
        if ref.uri:
            from jobs.prompt_registry import load_registered_prompt

            prompt = load_registered_prompt(ref.uri, config.mlflow.tracking_uri)
        else:
            prompt = find_prompt(ref.dir, ref.version, ref.name)
    except (OSError, ValueError) as err:
        raise ConfigError(f"prompt: {err}") from err
    problems = guardrails.check_prompt(prompt)
    if problems:
        raise ConfigError(f"prompt {prompt.key}: " + "; ".join(problems))
    return prompt


def build_task(config: DescribeConfig, prompt: PromptSpec, run_id: str) -> DescribeTask:
    return DescribeTask(
        engine=config.engine, images=config.images, prompt=prompt,
        sampling=config.sampling or prompt.sampling, batch_size=config.batch_size,
        run_id=run_id, engine_factory=config.engine_factory,
    )


def pending_rows(
    spark: "SparkSession", inputs: "DataFrame", config: DescribeConfig, prompt: PromptSpec,
    results_version: int | None = None,
) -> "DataFrame":
    """Input rows without a final result for this (prompt, model), with their next attempt
    number. Final: ``ok``, a non-retryable code, or retryable but out of attempts.

    Pass ``results_version`` inside a run: the plan is then recomputed identically even after
    the run's own commits (a recomputed cache must not drop rows that were just written)."""
    from pyspark.sql import functions as F

    done = results_for(spark, config, prompt, results_version).select(
        "image_id", "status", F.col("attempts").alias("prev_attempts")
    )
    retryable = F.col("status").isin(config.retry_statuses) & (
        F.coalesce(F.col("prev_attempts"), F.lit(0)) < config.max_attempts
    )
    extra = [c for c in inputs.columns if c not in ("image_id", "path")]
    return (
        inputs.join(done, "image_id", "left")
        .where(F.col("status").isNull() | retryable)
        .select(
            "image_id", "path",
            (F.coalesce(F.col("prev_attempts"), F.lit(0)) + 1).cast("int").alias("attempts"),
            *extra,
        )
    )


def run_describe(
    config: DescribeConfig, spark: "SparkSession", prompt: PromptSpec | None = None,
    reporter: Reporter | None = None,
) -> DescribeSummary:
    """Describe every pending input row and commit results chunk by chunk; phases and row
    progress go to ``reporter`` (default: the log).

    Raises:
        FlagRateExceeded: guardrail rates above ``config.max_flag_rate`` (results are written).
        TrackingError: MLflow failed and ``mlflow.on_error`` is ``fail`` (results are written).
    """
    prompt = prompt or resolve_prompt(config)
    reporter = reporter or Reporter()
    tracker = RunTracker(config.mlflow)
    run_name = config.run_name or f"{prompt.key} {config.engine.recorded_model_id}"
    run_id = tracker.start(run_name, tags={"candid.job": "describe", "candid.prompt": prompt.key})
    registered = tracker.register_prompt(prompt) if config.prompt.register_in_mlflow else None
    results_io.ensure_tables(spark, config.results_table)
    summary = DescribeSummary(
        run_id=run_id, results_table=config.results_table, input_table=config.input_table,
        input_version=latest_version(spark, config.input_table), prompt=prompt.key,
        prompt_hash=prompt.content_hash(), model=config.engine.recorded_model_id,
        registered_prompt=registered.uri if registered else None,
    )
    started = time.perf_counter()
    try:
        summary.rows_recovered = results_io.recover_staged(spark, config.results_table)
        sample = _describe_pending(
            spark, config, build_task(config, prompt, run_id), summary, reporter
        )
        if config.source_column.enabled:
            reporter.phase(f"[describe] writing {config.source_column.column_prefix}"
                           f"{prompt.version} onto {config.input_table}")
            write_source_column(spark, config, prompt)
    except BaseException:
        # Committed chunks stay committed; the MLflow run must not stay RUNNING forever.
        tracker.finish("FAILED")
        raise
    summary.seconds = time.perf_counter() - started
    summary.table_status_counts = result_status_counts(spark, config, prompt)
    log_run(tracker, config, prompt, summary, sample, spark)
    summary.tracking_failures = list(tracker.failures)
    tracker.raise_for_failures()
    check_flag_rates(spark, config, summary)
    return summary


def _describe_pending(
    spark: "SparkSession", config: DescribeConfig, task: DescribeTask,
    summary: DescribeSummary, reporter: Reporter,
) -> Any:
    """Copy results for already-described content, process the rest in chunks, then fan the
    representatives' results out to their duplicates. Returns a sample of staged rows."""
    from pyspark.sql import functions as F

    inputs = read_table(spark, config.input_table, version=summary.input_version)
    inputs = inputs.select("image_id", "path", *[c for c in (dedup.HASH,) if c in inputs.columns])
    _check_unique_ids(inputs, config.input_table)
    summary.rows_in = inputs.count()
    before = latest_version(spark, config.results_table)
    pending = pending_rows(spark, inputs, config, task.prompt, before).cache()
    summary.rows_pending = pending.count()
    duplicates = None
    if dedup.HASH in pending.columns and summary.rows_pending:
        donors = results_for(spark, config, task.prompt, before).where(F.col("status") == "ok")
        _add_reused(summary, dedup.copy_from_donors(
            spark, donors, pending, config.results_table, task.run_id, dedup.REUSE_CHUNK))
        reused = results_for(spark, config, task.prompt, latest_version(spark, config.results_table))
        remaining = pending.join(
            reused.where(F.col("run_id") == task.run_id), "image_id", "left_anti"
        )
        pending, duplicates = dedup.split_representatives(remaining)
    to_describe = pending.count()
    chunks = _chunks_of(pending, to_describe, config.chunk_size, summary)
    reporter.phase(
        f"[describe] {task.prompt.key} on {task.engine.recorded_model_id}: {summary.rows_in} "
        f"input rows, {summary.rows_reused} copied from identical images, {to_describe} "
        f"to describe in {summary.chunks} chunk(s)"
    )
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.batch_size))
    sample: list[Any] = []
    progress = reporter.rows(to_describe, "describe")
    for chunk, rows in enumerate(chunks):
        wanted = config.mlflow.sample_rows - sum(len(s) for s in sample)
        counts, flags, chunk_sample = _process_chunk(
            spark, config, task, rows, config.results_table, chunk, wanted,
            _progress_updater(progress, summary),
        )
        _add_counts(summary.status_counts, counts)
        _add_counts(summary.flag_counts, flags)
        summary.rows_processed += sum(counts.values())
        if chunk_sample is not None:
            sample.append(chunk_sample)
        ok = summary.status_counts.get("ok", 0)
        progress.update(summary.rows_processed, ok, sum(summary.status_counts.values()) - ok)
    progress.close()
    if duplicates is not None:
        donors = results_for(spark, config, task.prompt)
        _add_reused(summary, dedup.copy_from_donors(
            spark, donors, duplicates, config.results_table, task.run_id, dedup.FANOUT_CHUNK))
    pending.unpersist()
    return pd.concat(sample, ignore_index=True) if sample else None


def _chunks_of(
    pending: "DataFrame", count: int, chunk_size: int, summary: DescribeSummary
) -> list["DataFrame"]:
    """Deterministic chunks by a hash of image_id: the same rows land in the same chunk."""
    from pyspark.sql import functions as F

    summary.chunks = max(1, math.ceil(count / chunk_size)) if count else 0
    if not count:
        return []
    keyed = pending.withColumn("_chunk", F.pmod(F.xxhash64("image_id"), F.lit(summary.chunks)))
    return [keyed.where(F.col("_chunk") == c).drop("_chunk") for c in range(summary.chunks)]


def _add_reused(summary: DescribeSummary, counts: dict[str, int]) -> None:
    _add_counts(summary.status_counts, counts)
    summary.rows_reused += sum(counts.values())


def flag_rates(summary: DescribeSummary) -> dict[str, float]:
    """Share of this run's ok outputs that carry each flag."""
    ok = summary.rows_ok
    return {flag: count / ok for flag, count in summary.flag_counts.items()} if ok else {}


def check_flag_rates(spark: "SparkSession", config: DescribeConfig, summary: DescribeSummary) -> None:
    """Raise ``FlagRateExceeded`` naming each flag over its limit, with example rows."""
    from pyspark.sql import functions as F

    rates = flag_rates(summary)
    over = guardrails.check_thresholds(rates, config.max_flag_rate)
    if not over:
        return
    lines = [f"guardrail flag rates over max_flag_rate in run {summary.run_id} "
             f"(results are written to {config.results_table}):"]
    rows = delta_table(spark, config.results_table).toDF().where(F.col("run_id") == summary.run_id)
    for flag in over:
        lines.append(f"  {flag}: {rates[flag]:.1%} > {config.max_flag_rate[flag]:.1%}")
        examples = rows.where(F.array_contains("guardrail_flags", flag)).limit(3).collect()
        for example in examples:
            text = (example["description"] or "").replace("\n", " ")[:120]
            lines.append(f"    e.g. {example['image_id']} ({example['path']}): {text!r}")
    raise FlagRateExceeded("\n".join(lines))


def _process_chunk(
    spark: "SparkSession", config: DescribeConfig, task: DescribeTask, rows: "DataFrame",
    results_table: str, chunk: int, sample_rows: int, on_counts,
) -> tuple[dict[str, int], dict[str, int], Any]:
    """Run the engine on one chunk and commit it (``results_io.commit_chunk``); while it runs,
    ``on_counts`` gets the statuses of the rows that finished tasks described."""
    from pyspark.sql import functions as F

    partitions = config.partitions or spark.sparkContext.defaultParallelism
    counts = spark.sparkContext.accumulator({}, StatusCountsParam())
    described = (
        rows.select("image_id", "path", "attempts").repartition(partitions, "image_id")
        .mapInPandas(counting_statuses(make_describe_fn(task), counts), schema=result_schema_ddl())
        .withColumn("written_at", F.current_timestamp())
        .withColumn("chunk", F.lit(chunk).cast("int"))
    )
    schema = task.prompt.output.json_schema
    if task.prompt.output.mode == "json" and schema:
        # Typed view of the JSON output; schema evolution adds it to the tables on first use.
        ddl = ", ".join(f"`{name}` {kind}" for name, kind in structured_columns(schema))
        described = described.withColumn("structured", F.from_json("structured_json", ddl))
    done = results_io.commit_chunk(
        spark, described, results_table, task.run_id, chunk,
        count_flags=True, sample_rows=sample_rows,
        watch_staging=lambda: polling(lambda: dict(counts.value), on_counts),
    )
    return done.counts, done.flags, done.sample


def results_for(
    spark: "SparkSession", config: DescribeConfig, prompt: PromptSpec, version: int | None = None
) -> "DataFrame":
    """This prompt version's and model's rows in the results table (at a fixed Delta version
    when given: a plan that must not change while the job writes to the table)."""
    from pyspark.sql import functions as F

    return read_table(spark, config.results_table, version).where(
        (F.col("prompt_name") == prompt.name)
        & (F.col("prompt_version") == prompt.version)
        & (F.col("model") == config.engine.recorded_model_id)
    )


def result_status_counts(
    spark: "SparkSession", config: DescribeConfig, prompt: PromptSpec
) -> dict[str, int]:
    return results_io.status_counts(results_for(spark, config, prompt))


def write_source_column(spark: "SparkSession", config: DescribeConfig, prompt: PromptSpec) -> None:
    """MERGE this prompt version's ok descriptions into the input table as a new column
    (schema evolution adds it on first use)."""
    from pyspark.sql import functions as F

    column = f"{config.source_column.column_prefix}{prompt.version}"
    descriptions = (
        results_for(spark, config, prompt)
        .where(F.col("status") == "ok")
        .select("image_id", F.col("description").alias(column))
    )
    # Two runs of different prompt versions both evolve the input table's schema: the later
    # commit gets a MetadataChangedException and is retried.
    results_io.with_concurrency_retries(
        lambda: (
            delta_table(spark, config.input_table).alias("t")
            .merge(descriptions.alias("s"), "t.image_id = s.image_id")
            .withSchemaEvolution()
            .whenMatchedUpdateAll()
            .execute()
        ),
        what=f"write {column} into {config.input_table}",
    )


def log_run(
    tracker: RunTracker, config: DescribeConfig, prompt: PromptSpec, summary: DescribeSummary,
    sample: Any, spark: "SparkSession",
) -> None:
    """Everything goes to MLflow after the Delta commits, from the driver."""
    sampling = config.sampling or prompt.sampling
    tracker.log_params({
        "model": summary.model, "engine": config.engine.backend, "dtype": config.engine.dtype,
        "prompt_name": prompt.name, "prompt_version": prompt.version,
        "prompt_hash": summary.prompt_hash, "input_table": config.input_table,
        "input_version": summary.input_version, "results_table": config.results_table,
        "batch_size": config.batch_size, "chunk_size": config.chunk_size,
        "prompt_registry_uri": summary.registered_prompt or "",
        **{f"sampling.{k}": v for k, v in sampling.model_dump().items()},
    })
    metrics = {
        "rows_in": summary.rows_in, "rows_pending": summary.rows_pending,
        "rows_processed": summary.rows_processed, "rows_ok": summary.rows_ok,
        "rows_error": summary.rows_processed - summary.rows_ok,
        "rows_recovered": summary.rows_recovered, "rows_reused": summary.rows_reused, "images_per_s": summary.images_per_s,
        "seconds": summary.seconds,
        **{f"status.{k}": v for k, v in summary.status_counts.items()},
        **{f"flag_rate.{k}": v for k, v in flag_rates(summary).items()},
    }
    tracker.log_metrics(metrics)
    tracker.log_text(yaml.safe_dump(prompt.model_dump(mode="json"), sort_keys=False),
                     f"prompt/{prompt.name}_{prompt.version}.yaml")
    tracker.log_text(prompt.user_text(), f"prompt/{prompt.name}_{prompt.version}_user.txt")
    tracker.log_text(
        yaml.safe_dump(redact(config.model_dump(mode="json")), sort_keys=False), "config.yaml"
    )
    tracker.log_text(json.dumps(asdict(summary), indent=2, default=str), "summary.json")
    spark_conf = dict(spark.sparkContext.getConf().getAll())
    tracker.log_text(json.dumps(redact(spark_conf), indent=2, sort_keys=True), "spark_conf.json")
    if sample is not None and len(sample):
        tracker.log_table(_loggable(sample), "samples/outputs.json")
    tracker.finish("FINISHED")


def _loggable(frame):
    """Sample rows as MLflow can store them: lists as JSON, text with URL credentials (signed
    image URLs) redacted."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(
                lambda v: json.dumps(list(v)) if hasattr(v, "__len__") and not isinstance(v, str)
                else redact_text(v) if isinstance(v, str) else v
            )
    frame["written_at"] = frame["written_at"].astype(str)
    return frame


def _check_unique_ids(inputs: "DataFrame", table: str) -> None:
    duplicated = inputs.groupBy("image_id").count().where("count > 1").limit(5).collect()
    if duplicated:
        ids = [r["image_id"] for r in duplicated]
        raise ValueError(f"input table {table} has duplicate image_id values, e.g. {ids}")


def _add_counts(total: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + int(value)


def _progress_updater(progress: RowProgress, summary: DescribeSummary):
    """Moves the progress line with the statuses the chunk's finished tasks report."""
    base_ok = summary.status_counts.get("ok", 0)
    base_all = sum(summary.status_counts.values())

    def update(counts: dict[str, int]) -> None:
        done, ok = sum(counts.values()), counts.get("ok", 0)
        progress.update(summary.rows_processed + done, base_ok + ok, base_all - base_ok + done - ok)

    return update

def main(argv: list[str] | None = None) -> int:
    """``spark-submit jobs/describe.py --config FILE [--set k=v ...]``."""
    from jobs.cli import main as cli_main

    return cli_main(["describe", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
