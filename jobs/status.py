"""``candid status``: how far a describe config has got, from the Delta tables alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobs.config import DescribeConfig
from jobs.delta_io import read_table, table_exists
from jobs.describe import pending_rows, resolve_prompt
from jobs.results import staging_table_for

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass
class RunStatus:
    input_table: str
    results_table: str
    prompt: str
    model: str
    input_rows: int = 0
    ok: int = 0
    failed_final: dict[str, int] = field(default_factory=dict)
    failed_retryable: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    staged_leftover: int = 0


def read_status(spark: "SparkSession", config: DescribeConfig) -> RunStatus:
    from pyspark.sql import functions as F

    prompt = resolve_prompt(config)
    status = RunStatus(
        input_table=config.input_table, results_table=config.results_table,
        prompt=prompt.key, model=config.engine.recorded_model_id,
    )
    inputs = read_table(spark, config.input_table).select("image_id", "path")
    status.input_rows = inputs.count()
    if not table_exists(spark, config.results_table):
        status.pending = status.input_rows
        return status
    this_run = (
        (F.col("prompt_name") == prompt.name) & (F.col("prompt_version") == prompt.version)
        & (F.col("model") == status.model)
    )
    results = (
        read_table(spark, config.results_table)
        .join(inputs.select("image_id"), "image_id", "left_semi")
        .where(this_run)
    )
    # As in jobs.describe.pending_rows: a row without an attempts count has used none.
    retryable = F.col("status").isin(config.retry_statuses) & (
        F.coalesce(F.col("attempts"), F.lit(0)) < config.max_attempts
    )
    for row in results.groupBy("status", retryable.alias("retryable")).count().collect():
        if row["status"] == "ok":
            status.ok += row["count"]
        else:
            bucket = status.failed_retryable if row["retryable"] else status.failed_final
            bucket[row["status"]] = bucket.get(row["status"], 0) + row["count"]
    status.pending = pending_rows(spark, inputs, config, prompt).count()
    staging = staging_table_for(config.results_table)
    if table_exists(spark, staging):
        status.staged_leftover = read_table(spark, staging).where(this_run).count()
    return status


def format_status(status: RunStatus) -> str:
    lines = [
        f"input   {status.input_table}: {status.input_rows} rows",
        f"results {status.results_table}",
        f"prompt  {status.prompt}   model {status.model}",
        f"  ok                      {status.ok}",
    ]
    for title, bucket in (("failed (final)", status.failed_final),
                          ("failed (will retry)", status.failed_retryable)):
        for code, count in sorted(bucket.items()):
            lines.append(f"  {title:<22}  {count}  [{code}]")
    lines.append(f"  pending (incl. retries) {status.pending}")
    if status.staged_leftover:
        lines.append(
            f"  staged, not yet merged  {status.staged_leftover} (the next run merges them)"
        )
    return "\n".join(lines)
