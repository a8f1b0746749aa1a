"""``candid audit``: the self-check audit (POPE-style) of a sample of described rows.

For a sample of the ok rows of the config's result scope (its prompt version and model), the
same model is asked yes/no questions about each concrete claim of the description, with the
image, in a second pass on the executors (``udfs.runner.audit`` through the one executor runner:
``mapInPandas``, the worker's cached engine, GPU pinning, streamed feeding), plus control
questions about objects absent by construction: the scene truth's when the input table is an
eval dataset (``truth_json``), else vocabulary objects the description does not name (only
probably absent on real images).

Rows go to a Delta table (appended, one ``audit_run_id`` per run) with the probe prompt's
name, version and hash; the rates, each with its interval (``udfs.evaluation.ab.rate_ci``: claims
nest in rows, so per-claim rates get the cluster ratio interval), go to an MLflow run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from jobs.cluster.gpu_layout import engine_stage_profile, session_engine_slots
from jobs.config import ConfigError, DescribeConfig
from jobs.evaluation.dataset import TRUTH_COLUMN
from jobs.job_settings import project_file
from jobs.tables.delta_io import is_path, read_table, table_exists
from jobs.tables.identity import identify_run
from jobs.tables.layout import audit_table_beside
from jobs.tracking.prompt_store import resolve_prompt
from jobs.tracking.runs import RunTracker
from udfs.evaluation.ab import DEFAULT_SETTINGS, IntervalSettings, ci_metrics
from udfs.evaluation.intervals import RateCI
from udfs.evaluation.selfcheck import AuditResult, audit_rate_cis
from udfs.prompts import PromptSpec, load_prompt_file
from udfs.runner.audit import (
    AuditTask,
    audit_schema_ddl,
    check_probe_template,
)
from udfs.runner.spark_udf import make_partition_fn

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import DataFrame, SparkSession

DEFAULT_PROBE_PROMPT = "conf/prompts/probes/probe_v1.yaml"
# Rows per frame into the audit UDF (AuditTask.batch_size: the adapter cuts Spark's Arrow
# batches to this many rows for this query alone); the engine is fed as a stream across frames,
# so this sets how often results come back, not how full the engine is.
DEFAULT_BATCH_ROWS = 64


@dataclass(frozen=True)
class AuditOptions:
    """What to audit and how (the CLI's flags)."""

    sample: int = 100
    out: str | None = None
    seed: int = 0
    n_controls: int = 2
    probe_prompt: str = DEFAULT_PROBE_PROMPT
    batch_rows: int = DEFAULT_BATCH_ROWS


@dataclass
class AuditSummary:
    """What an audit run did; printed by the CLI."""

    run_id: str
    scope: str
    out_table: str
    probe_prompt: str
    probe_hash: str
    controls_from: str
    rows: int = 0
    rows_ok: int = 0
    claims: int = 0
    controls: int = 0
    rates: dict[str, RateCI] = field(default_factory=dict)
    tracking_failures: list[str] = field(default_factory=list)


def load_probe_prompt(path: str) -> PromptSpec:
    """The probe prompt file, checked (``{question}`` once, text output).

    Raises:
        ConfigError: the file is missing or unfit.
    """
    try:
        spec = load_prompt_file(project_file(path))
        check_probe_template(spec)
    except (OSError, ValueError) as err:
        raise ConfigError(f"probe prompt: {err}") from err
    return spec


def default_out_table(results_table: str) -> str:
    """The audit table beside a results table named by a path (``audit_table_beside``).

    Raises:
        ConfigError: the results table is a metastore name (give --out).
    """
    beside = audit_table_beside(results_table)
    if beside is None:
        raise ConfigError(f"--out is needed: {results_table!r} is a metastore name, not a path")
    return beside


def run_audit(
    config: DescribeConfig, spark: SparkSession, options: AuditOptions,
    make_engine: Callable | None = None, settings: IntervalSettings = DEFAULT_SETTINGS,
) -> AuditSummary:
    """Audit a sample of the config's ok result rows; rows to Delta, rates to MLflow."""
    prompt = resolve_prompt(config.prompt, config.mlflow.tracking_uri)
    probe = load_probe_prompt(options.probe_prompt)
    identity = identify_run(config, prompt)
    out = options.out or default_out_table(config.results_table)
    sample, controls_from = _sample(spark, config, identity.scope.rows(spark), options, prompt)
    if sample.isEmpty():
        raise ValueError(f"no ok rows of {identity.scope.key} in {config.results_table}: "
                         "describe first, or check the config's prompt version and model")
    tracker = RunTracker(config.mlflow)
    run_id = tracker.start(f"audit {identity.scope.key}",
                           {"candid.job": "audit", "candid.prompt": prompt.key})
    task = AuditTask(engine=identity.engine, images=config.images, probe_prompt=probe,
                     n_controls=options.n_controls, seed=options.seed, make_engine=make_engine,
                     batch_size=options.batch_rows,
                     claim_fields=dict(prompt.claims) if prompt.output.mode == "json" else None)
    try:
        audited = _second_pass(spark, sample, task, options, config)
        described = sample.drop("path", "json_mode", "controls")
        _append(_with_provenance(audited.join(described, "image_id"), probe, run_id, task), out)
        audited.unpersist()
    except BaseException:
        tracker.finish("FAILED")  # the MLflow run must not stay RUNNING forever
        raise
    summary = _summarise(read_table(spark, out), run_id, identity.scope.key, out, probe,
                         controls_from, settings)
    _log_audit(tracker, summary, options, probe, read_table(spark, out))
    summary.tracking_failures = list(tracker.failures)
    tracker.raise_for_failures()
    return summary


def _append(rows: DataFrame, out: str) -> None:
    """Add this run's rows to the audit table (created on first use)."""
    writer = rows.write.format("delta").mode("append").option("mergeSchema", "true")
    writer.save(out) if is_path(out) else writer.saveAsTable(out)


def _sample(spark: SparkSession, config: DescribeConfig, rows: DataFrame,
            options: AuditOptions, prompt: PromptSpec) -> tuple[DataFrame, str]:
    """``options.sample`` ok rows, chosen by a hash of image_id and the seed (the same rows
    for the same seed), with the controls column; and where controls come from."""
    from pyspark.sql import functions as F

    if options.sample < 1:
        raise ConfigError(f"--sample must be at least 1, got {options.sample}")
    picked = (rows.where(F.col("status") == "ok")
              .orderBy(F.xxhash64("image_id", F.lit(options.seed)), "image_id")
              .limit(options.sample)
              .select("image_id", "path", "description", "structured_json", "prompt_name",
                      "prompt_version", "model", "run_fingerprint",
                      F.lit(prompt.output.mode == "json").alias("json_mode")))
    inputs = read_table(spark, config.input_table) if table_exists(
        spark, config.input_table) else None
    if inputs is None or TRUTH_COLUMN not in inputs.columns:
        return picked.withColumn("controls", F.lit(None).cast("array<string>")), "vocabulary"
    absent = F.from_json(F.col(TRUTH_COLUMN), "absent ARRAY<STRING>").getField("absent")
    truth = inputs.select("image_id", absent.alias("controls"))
    return picked.join(truth, "image_id", "left"), "truth"


def _second_pass(spark: SparkSession, sample: DataFrame, task: AuditTask,
                 options: AuditOptions, config: DescribeConfig) -> DataFrame:
    """The probes on the executors; the result is cached so Delta and the rates read it once."""
    partitions = config.partitions or session_engine_slots(spark)
    inputs = sample.select("image_id", "path", "description", "structured_json", "json_mode",
                           "controls").repartition(partitions, "image_id")
    # Frames of task.batch_size rows for this query alone (udfs.runner.spark_udf: not a
    # session conf).
    audited = inputs.mapInPandas(make_partition_fn(task), audit_schema_ddl(),
                                 profile=engine_stage_profile(spark))
    audited = audited.cache()
    audited.count()
    return audited


def _with_provenance(rows: DataFrame, probe: PromptSpec, run_id: str,
                     task: AuditTask) -> DataFrame:
    """What the audit rows must say about how they were made."""
    from pyspark.sql import functions as F

    return (rows.withColumnRenamed("prompt_name", "described_prompt_name")
            .withColumnRenamed("prompt_version", "described_prompt_version")
            .withColumnRenamed("model", "described_model")
            .withColumn("probe_prompt_name", F.lit(probe.name))
            .withColumn("probe_prompt_version", F.lit(probe.version))
            .withColumn("probe_prompt_hash", F.lit(probe.content_hash()))
            .withColumn("audit_model", F.lit(task.engine.recorded_model_id))
            .withColumn("audit_run_id", F.lit(run_id))
            .withColumn("audited_at", F.current_timestamp()))


def _summarise(table: DataFrame, run_id: str, scope: str, out: str, probe: PromptSpec,
               controls_from: str, settings: IntervalSettings) -> AuditSummary:
    from pyspark.sql import functions as F

    rows = table.where(F.col("audit_run_id") == run_id).collect()
    results = [AuditResult(r["n_claims"], tuple(r["unconfirmed"]), tuple(r["denied"]),
                           r["n_controls"], tuple(r["control_yes"]))
               for r in rows if r["status"] == "ok"]
    return AuditSummary(
        run_id=run_id, scope=scope, out_table=out, probe_prompt=probe.key,
        probe_hash=probe.content_hash(), controls_from=controls_from, rows=len(rows),
        rows_ok=len(results), claims=sum(r.n_claims for r in results),
        controls=sum(r.n_controls for r in results), rates=audit_rate_cis(results, settings),
    )


def _log_audit(tracker: RunTracker, summary: AuditSummary, options: AuditOptions,
               probe: PromptSpec, table: DataFrame) -> None:
    from pyspark.sql import functions as F

    tracker.log_params({
        "scope": summary.scope, "out_table": summary.out_table, "sample": options.sample,
        "seed": options.seed, "n_controls": options.n_controls,
        "controls_from": summary.controls_from, "probe_prompt": probe.key,
        "probe_prompt_hash": summary.probe_hash, "probe_prompt_file": options.probe_prompt,
    })
    metrics = {"rows": summary.rows, "rows_ok": summary.rows_ok, "claims": summary.claims,
               "controls": summary.controls}
    for name, ci in summary.rates.items():
        metrics.update(ci_metrics(name, ci))
    tracker.log_metrics(metrics)
    tracker.log_text(yaml.safe_dump(probe.model_dump(mode="json"), sort_keys=False),
                     f"prompt/{Path(options.probe_prompt).name}")
    frame = table.where(F.col("audit_run_id") == summary.run_id).drop("audited_at").toPandas()
    for column in ("unconfirmed", "denied", "control_yes"):
        frame[column] = frame[column].map(lambda v: json.dumps(list(v)) if v is not None else None)
    tracker.log_table(frame, "audit/rows.json")
    tracker.finish("FINISHED")
