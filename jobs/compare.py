"""Canary A/B of prompt versions on one stratified sample, before a full run.

``candid compare --config FILE --prompts v1,v2,v3 --sample 200`` draws a sample of the input
table stratified by source, size bucket and low-visibility (from image metrics of earlier runs,
``unknown`` where none exist), describes it with each prompt version (the normal describe job,
so results are resumable and carry full provenance), then writes:

- ``<out>/sample``: the sampled rows (Delta);
- ``<out>/results``: every prompt's result rows (Delta, the usual results schema);
- ``<out>/side_by_side``: one row per image, each prompt's output in its own columns (Delta);
- ``<out>/review.html``: the offline review page, also logged to the compare MLflow run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.config import DescribeConfig, PromptRef, SourceColumnSettings
from jobs.console import Reporter
from jobs.delta_io import read_table, table_exists
from jobs.describe import DescribeSummary, resolve_prompt, run_describe
from jobs.review_page import PromptColumn, review_rows_from_records, write_review_page
from jobs.tracking import RunTracker
from udfs import guardrails
from udfs.prompts import PromptSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("candid.compare")

# Longest original side, in pixels, that closes each size bucket.
SIZE_BUCKETS = ((64, "tiny<=64"), (128, "small<=128"), (256, "thumb<=256"))
SIDE_BY_SIDE_FIELDS = ("status", "description", "guardrail_flags", "finish_reason", "completion_tokens")


@dataclass
class CompareSummary:
    versions: list[str]
    sample_rows: int
    out_dir: str
    run_id: str
    html_path: str
    per_prompt: dict[str, dict[str, Any]] = field(default_factory=dict)


def stratum_column(inputs: "DataFrame", metrics: "DataFrame | None"):
    """``inputs`` with a ``stratum`` column: source | size bucket | visibility."""
    from pyspark.sql import functions as F

    frame = inputs if metrics is None else inputs.join(metrics, "image_id", "left")
    side = F.greatest("orig_width", "orig_height") if metrics is not None else F.lit(None)
    size = F.when(side.isNull(), F.lit("size?"))
    for limit, name in SIZE_BUCKETS:
        size = size.when(side <= limit, F.lit(name))
    size = size.otherwise(F.lit("large"))
    visibility = (
        F.when(F.col("low_visibility"), "low-vis").when(~F.col("low_visibility"), "clear")
        .otherwise("vis?") if metrics is not None else F.lit("vis?")
    )
    source = F.coalesce(F.col("source"), F.lit("?")) if "source" in inputs.columns else F.lit("?")
    return frame.withColumn("stratum", F.concat_ws(" | ", source, size, visibility))


def stratified_sample(
    inputs: "DataFrame", metrics: "DataFrame | None", size: int, seed: int = 0
) -> "DataFrame":
    """About ``size`` rows, each stratum represented in proportion and by at least one row;
    deterministic for a seed (rows ordered by a hash of image_id within a stratum)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frame = stratum_column(inputs, metrics)
    total = frame.count()
    if total == 0:
        raise ValueError("the input table is empty: nothing to compare")
    quota = (
        F.greatest(F.lit(1), F.round(F.col("stratum_rows") * F.lit(size / total))).cast("int")
    )
    order = Window.partitionBy("stratum").orderBy(F.xxhash64("image_id", F.lit(seed)), "image_id")
    return (
        frame.withColumn("stratum_rows", F.count("*").over(Window.partitionBy("stratum")))
        .withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= quota)
        .select("image_id", "path", "stratum")
    )


def latest_metrics(spark: "SparkSession", results_table: str) -> "DataFrame | None":
    """Per image, the evidence metrics of any earlier result row (they do not depend on the
    prompt), or None when there is no results table yet."""
    from pyspark.sql import functions as F

    if not table_exists(spark, results_table):
        return None
    return (
        read_table(spark, results_table)
        .where(F.col("orig_width").isNotNull())
        .groupBy("image_id")
        .agg(F.max("orig_width").alias("orig_width"), F.max("orig_height").alias("orig_height"),
             F.max("low_visibility").alias("low_visibility"))
    )


def side_by_side(results: "DataFrame", prompts: list[PromptSpec]) -> "DataFrame":
    """One row per image; ``<field>_<version>`` columns for each prompt."""
    from pyspark.sql import functions as F

    frame = results.select("image_id", "path").distinct()
    for prompt in prompts:
        columns = [F.col(f).alias(f"{f}_{prompt.version}") for f in SIDE_BY_SIDE_FIELDS]
        per_prompt = results.where(
            (F.col("prompt_name") == prompt.name) & (F.col("prompt_version") == prompt.version)
        ).select("image_id", *columns)
        frame = frame.join(per_prompt, "image_id", "left")
    return frame.orderBy("image_id")


def run_compare(
    config: DescribeConfig, versions: list[str], sample_size: int, out_dir: str,
    spark: "SparkSession", seed: int = 0, reporter: Reporter | None = None,
) -> CompareSummary:
    """Sample, describe with each version, and write the side-by-side table and review page."""
    out = Path(out_dir).resolve()
    prompts = [
        resolve_prompt(config.model_copy(update={"prompt": PromptRef(version=v, dir=config.prompt.dir)}))
        for v in versions
    ]
    sample = stratified_sample(
        read_table(spark, config.input_table), latest_metrics(spark, config.results_table),
        sample_size, seed,
    )
    sample.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(str(out / "sample"))
    reporter = reporter or Reporter()
    reporter.phase(f"[compare] sample of {read_table(spark, str(out / 'sample')).count()} "
                   f"images in {out / 'sample'}")
    summaries = [_describe_sample(config, prompt, out, spark, reporter) for prompt in prompts]
    results = read_table(spark, str(out / "results")).join(
        read_table(spark, str(out / "sample")).select("image_id"), "image_id", "left_semi"
    )
    table = side_by_side(results, prompts)
    table.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(str(out / "side_by_side"))
    tracker = RunTracker(config.mlflow)
    run_id = tracker.start(f"compare {','.join(versions)}", {"candid.job": "compare"})
    records = [r.asDict() for r in results.orderBy("image_id").collect()]
    html = _write_page(records, prompts, summaries, out, run_id, config)
    per_prompt = {s.prompt: _prompt_figures(s, records) for s in summaries}
    _log_compare(tracker, per_prompt, summaries, table, html)
    return CompareSummary(
        versions=versions, sample_rows=read_table(spark, str(out / "sample")).count(),
        out_dir=str(out), run_id=run_id, html_path=html, per_prompt=per_prompt,
    )


def _describe_sample(
    config: DescribeConfig, prompt: PromptSpec, out: Path, spark: "SparkSession",
    reporter: Reporter,
) -> DescribeSummary:
    canary = config.model_copy(update={
        "input_table": str(out / "sample"),
        "results_table": str(out / "results"),
        "prompt": PromptRef(version=prompt.version, name=prompt.name, dir=config.prompt.dir),
        "source_column": SourceColumnSettings(enabled=False),
        "max_flag_rate": {},
        "run_name": f"compare {prompt.key}",
    })
    return run_describe(canary, spark, prompt, reporter)


def _prompt_figures(summary: DescribeSummary, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures over the whole sample for one prompt, including rows described by an earlier
    compare run (a rerun describes nothing new, and its figures must not come out empty)."""
    mine = [r for r in records if f"{r['prompt_name']}/{r['prompt_version']}" == summary.prompt]
    ok = [r for r in mine if r["status"] == "ok"]
    return {
        "prompt_hash": summary.prompt_hash, "run_id": summary.run_id, "rows": len(mine),
        "ok": len(ok),
        "flag_rates": guardrails.flag_rates([r["guardrail_flags"] for r in ok], len(ok)) if ok else {},
    }


def _write_page(records, prompts, summaries, out: Path, run_id: str, config) -> str:
    columns = [
        PromptColumn(key=p.key, prompt_hash=p.content_hash(), description=p.description)
        for p in prompts
    ]
    facts = {
        "compare run": run_id, "model": config.engine.recorded_model_id,
        "input table": config.input_table, "sample": str(out / "sample"),
        "describe runs": {s.prompt: s.run_id for s in summaries},
    }
    return write_review_page(
        out / "review.html", f"Candid prompt comparison: {', '.join(p.key for p in prompts)}",
        columns, review_rows_from_records(records), facts,
    )


def _log_compare(tracker: RunTracker, per_prompt, summaries, table, html: str) -> None:
    import json

    metrics: dict[str, float] = {}
    for key, figures in per_prompt.items():
        version = key.split("/")[-1]
        metrics[f"{version}.ok_rate"] = figures["ok"] / figures["rows"] if figures["rows"] else 0.0
        for flag, rate in figures["flag_rates"].items():
            metrics[f"{version}.flag_rate.{flag}"] = rate
    tracker.log_params({f"prompt_hash.{k.split('/')[-1]}": v["prompt_hash"] for k, v in per_prompt.items()})
    tracker.log_metrics(metrics)
    frame = table.toPandas()
    for column in frame.columns:
        if column.startswith("guardrail_flags_"):
            frame[column] = frame[column].map(lambda v: json.dumps(list(v)) if v is not None else None)
    tracker.log_table(frame, "comparison/side_by_side.json")
    tracker.log_text(json.dumps(per_prompt, indent=2), "comparison/per_prompt.json")
    tracker.log_artifact(html, "review")
    tracker.finish("FINISHED")
