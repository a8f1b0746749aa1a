"""The last step of a describe run: figures for the whole scope, everything to MLflow (from the
driver, after the Delta commits), then the alarms that fail a run whose rows are written."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from jobs.cluster.capacity_plan import actual_vs_plan
from jobs.commandline.browse import browse_hint
from jobs.config import DescribeConfig
from jobs.describe.start import DescribeRun, DescribeSummary
from jobs.tracking.redaction import redact, redact_text
from udfs.fingerprint import fingerprint_inputs
from udfs.outputs import guardrails
from udfs.runner.feeding import engine_metrics

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.describe.chunks import DescribedChunks
    from jobs.describe.dedup import IdenticalReuse
    from jobs.describe.ledger import TaskLedger
    from jobs.describe.pending import PendingPlan
    from udfs.outputs.tally import Tally


class FlagRateExceeded(RuntimeError):
    """Guardrail flag rates above ``max_flag_rate``; raised after the results are written."""


@dataclass(frozen=True)
class StepResults:
    """What the steps between ``open_run`` and ``finish_run`` returned."""

    plan: PendingPlan
    reused: IdenticalReuse
    described: DescribedChunks
    fanned_out: Tally


def finish_run(
    spark: SparkSession, run: DescribeRun, started: float, steps: StepResults
) -> DescribeSummary:
    """Close the run: whole-scope tally, the summary assembled from the steps' returns, MLflow,
    then ``TrackingError`` (with ``on_error: fail``) or ``FlagRateExceeded``, in that order:
    the results are written either way."""
    seconds = time.perf_counter() - started
    table_tally = run.scope.tally(spark)
    ratios, vs_plan = compare_to_plan(run, steps.described.ledger)
    summary = summarize(run, steps, seconds, table_tally, vs_plan)
    log_run(spark, run, summary, steps.described, ratios)
    # The MLflow failures are known only once logging is done (summary.json has none of them).
    summary = replace(summary, tracking_failures=list(run.tracker.failures))
    run.tracker.raise_for_failures()
    check_flag_rates(spark, run, summary)
    return summary


def summarize(
    run: DescribeRun, steps: StepResults, seconds: float, table_tally: Tally,
    vs_plan: list[str],
) -> DescribeSummary:
    """The run's summary, from what opening found and what each step returned."""
    opening, plan, described = run.opening, steps.plan, steps.described
    copied = steps.reused.copied + steps.fanned_out
    return DescribeSummary(
        run_id=run.task.run_id, results_table=run.config.results_table,
        input_table=run.config.input_table, prompt=run.prompt.key,
        prompt_hash=run.prompt.content_hash(), fingerprint=run.fingerprint,
        model=run.scope.model, input_version=plan.input_version, rows_in=plan.rows_in,
        rows_pending=plan.rows_pending, rows_to_describe=described.rows_to_describe,
        rows_processed=described.tally.rows, rows_recovered=opening.rows_recovered,
        rows_reused=copied.rows, rows_replaced=opening.rows_replaced,
        results_version_before=opening.results_version_before, chunks=described.chunks,
        seconds=seconds, tally=steps.reused.copied + described.tally + steps.fanned_out,
        table_tally=table_tally, engine=described.engine,
        vs_plan=list(vs_plan),
        registered_prompt=opening.registered_prompt,
    )


def compare_to_plan(run: DescribeRun, ledger: TaskLedger) -> tuple[dict[str, float], list[str]]:
    """The ``vs_plan.*`` ratios and lines against the plan the run names (none without)."""
    if not run.config.plan_run:
        return {}, []
    planned = run.tracker.metrics(run.config.plan_run)
    return actual_vs_plan(ledger.metrics(), planned, run.config.plan_run)


def log_run(
    spark: SparkSession, run: DescribeRun, summary: DescribeSummary, described: DescribedChunks,
    plan_ratios: dict[str, float],
) -> None:
    """Parameters, metrics, the prompt, the fingerprint's inputs, config and samples."""
    config, prompt, tracker = run.config, run.prompt, run.tracker
    task = run.task
    tracker.log_params({
        "model": summary.model, "engine": config.engine.backend, "dtype": config.engine.dtype,
        "prompt_name": prompt.name, "prompt_version": prompt.version,
        "prompt_hash": summary.prompt_hash, "run_fingerprint": summary.fingerprint,
        "input_table": config.input_table, "input_version": summary.input_version,
        "results_table": config.results_table, "batch_size": config.batch_size,
        "chunk_size": config.chunk_size, "replace": config.replace,
        "prompt_registry_uri": summary.registered_prompt or "",
        **{f"sampling.{k}": v for k, v in task.sampling.model_dump().items()},
    })
    tracker.log_metrics({
        "rows_in": summary.rows_in, "rows_pending": summary.rows_pending,
        "rows_processed": summary.rows_processed, "rows_ok": summary.tally.ok,
        "rows_error": summary.tally.errors, "rows_recovered": summary.rows_recovered,
        "rows_reused": summary.rows_reused, "rows_replaced": summary.rows_replaced,
        "images_per_s": summary.images_per_s, "seconds": summary.seconds,
        **{f"status.{k}": v for k, v in summary.tally.statuses.items()},
        **{f"flag_rate.{k}": v for k, v in summary.tally.flag_rates().items()},
        **engine_metrics(summary.engine),
        **described.ledger.metrics(),
    })
    if plan_ratios:
        tracker.log_metrics(plan_ratios)
    tracker.log_text(yaml.safe_dump(prompt.model_dump(mode="json"), sort_keys=False,
                                    allow_unicode=True),  # non-ASCII text as written
                     f"prompt/{prompt.name}_{prompt.version}.yaml")
    tracker.log_text(prompt.user_text(), f"prompt/{prompt.name}_{prompt.version}_user.txt")
    inputs = fingerprint_inputs(prompt, task.sampling, task.engine, task.images)
    tracker.log_text(json.dumps(inputs, indent=2, sort_keys=True), "run_fingerprint.json")
    tracker.log_text(
        yaml.safe_dump(redact(config.model_dump(mode="json")), sort_keys=False), "config.yaml"
    )
    tracker.log_text(json.dumps(asdict(summary), indent=2, default=str), "summary.json")
    spark_conf = dict(spark.sparkContext.getConf().getAll())
    tracker.log_text(json.dumps(redact(spark_conf), indent=2, sort_keys=True), "spark_conf.json")
    if described.samples:
        sample = pd.concat(described.samples, ignore_index=True)
        tracker.log_table(_loggable(sample), "samples/outputs.json")
    tracker.finish("FINISHED")


def check_flag_rates(spark: SparkSession, run: DescribeRun, summary: DescribeSummary) -> None:
    """Raise ``FlagRateExceeded`` naming each flag over its limit, with example rows."""
    from pyspark.sql import functions as F

    limits = run.config.max_flag_rate
    rates = summary.tally.flag_rates()
    over = guardrails.check_thresholds(rates, limits)
    if not over:
        return
    lines = [f"guardrail flag rates over max_flag_rate in run {summary.run_id} "
             f"(results are written to {summary.results_table}):"]
    rows = run.scope.rows(spark).where(F.col("run_id") == summary.run_id)
    for flag in over:
        lines.append(f"  {flag}: {rates[flag]:.1%} > {limits[flag]:.1%}")
        for example in rows.where(F.array_contains("guardrail_flags", flag)).limit(3).collect():
            text = (example["description"] or "").replace("\n", " ")[:120]
            lines.append(f"    e.g. {example['image_id']} ({example['path']}): {text!r}")
    raise FlagRateExceeded("\n".join(lines))


def _loggable(frame: pd.DataFrame) -> pd.DataFrame:
    """Sample rows as MLflow can store them: lists as JSON, text with URL credentials (signed
    image URLs) redacted."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(_loggable_value)
    frame["written_at"] = frame["written_at"].astype(str)
    return frame


def _loggable_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if hasattr(value, "__len__"):
        return json.dumps(list(value))
    return value


def summary_lines(summary: DescribeSummary, config: DescribeConfig) -> list[str]:
    """What ``candid describe`` prints when a run ends: the results table, the prompt, model and
    fingerprint, the counts, what was replaced or recovered, and where the MLflow run is."""
    lines: list[str] = []
    say = lines.append
    say(f"results table: {summary.results_table}")
    say(f"  prompt {summary.prompt} (hash {summary.prompt_hash}), model {summary.model}, "
        f"run fingerprint {summary.fingerprint}")
    say(f"  input rows {summary.rows_in}, processed now {summary.rows_processed} "
        f"in {summary.seconds:.1f}s ({summary.images_per_s:.2f} images/s), "
        f"statuses: {summary.tally.describe_statuses()}")
    say(f"  rows in the results table for this prompt and model: "
        f"{summary.table_tally.rows} ({summary.table_tally.describe_statuses()})")
    if summary.rows_replaced:
        say(f"  replaced {summary.rows_replaced} rows of other fingerprints (Delta version "
            f"{summary.results_version_before} of the results table still has them)")
    if summary.rows_recovered:
        say(f"  recovered {summary.rows_recovered} staged rows from an interrupted run")
    if summary.registered_prompt:
        say(f"  prompt registered as {summary.registered_prompt}")
    if config.mlflow.enabled:
        uri = redact_text(config.mlflow.tracking_uri)
        say(f"MLflow run: {summary.run_id} in experiment '{config.mlflow.experiment}' at {uri}")
        say(f"  browse: {browse_hint(config.mlflow.tracking_uri, summary.run_id)}")
    for line in summary.vs_plan:
        say(f"  {line}")
    for failure in summary.tracking_failures:
        say(f"  WARNING: {failure}")
    return lines
