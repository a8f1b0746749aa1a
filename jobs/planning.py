"""Which input rows a describe run describes, and in which chunks.

A row is pending when this prompt version and model have no current final result for it: no
row yet, a retryable failure with attempts left (``RetryPolicy``), or, with ``--replace``, a row
that another run fingerprint made (``ResultScope.current``). Both tables are read at fixed
Delta versions, so the plan does not move while the run writes to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.delta_io import latest_version, read_table
from jobs.describe_run import DescribeRun
from jobs.results import RetryPolicy

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# The content hash column ingest writes (identical bytes are described once, jobs.dedup).
HASH = "content_sha256"


@dataclass
class PendingPlan:
    """The run's pending rows, cached while the plan is used as a context manager."""

    input_version: int
    results_version: int
    pending: DataFrame

    def __enter__(self) -> PendingPlan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.pending.unpersist()


def plan_pending(spark: SparkSession, run: DescribeRun) -> PendingPlan:
    """Read both tables at their current versions and plan the run's pending rows."""
    config, summary = run.config, run.summary
    input_version = latest_version(spark, config.input_table)
    inputs = read_table(spark, config.input_table, version=input_version)
    inputs = inputs.select("image_id", "path", *[c for c in (HASH,) if c in inputs.columns])
    check_unique_ids(inputs, config.input_table)
    results_version = latest_version(spark, config.results_table)
    done = run.scope.rows(spark, results_version).where(
        run.scope.current(run.fingerprint, run.prompt.content_hash())
    )
    pending = pending_rows(inputs, done, run.retry).cache()
    summary.input_version = input_version
    summary.rows_in = inputs.count()
    summary.rows_pending = pending.count()
    return PendingPlan(input_version, results_version, pending)


def pending_rows(inputs: DataFrame, done: DataFrame, retry: RetryPolicy) -> DataFrame:
    """``inputs`` rows without a final row in ``done``, with their next attempt number."""
    from pyspark.sql import functions as F

    finished = done.select("image_id", "status", F.col("attempts").alias("prev_attempts"))
    extra = [c for c in inputs.columns if c not in ("image_id", "path")]
    return (
        inputs.join(finished, "image_id", "left")
        .where(F.col("status").isNull() | retry.retryable("prev_attempts"))
        .select(
            "image_id", "path",
            (F.coalesce(F.col("prev_attempts"), F.lit(0)) + 1).cast("int").alias("attempts"),
            *extra,
        )
    )


def split_chunks(rows: DataFrame, count: int, chunk_size: int) -> list[DataFrame]:
    """Deterministic chunks of about ``chunk_size`` rows by a hash of image_id: the same rows
    land in the same chunk on a rerun."""
    from pyspark.sql import functions as F

    if not count:
        return []
    chunks = max(1, math.ceil(count / chunk_size))
    keyed = rows.withColumn("_chunk", F.pmod(F.xxhash64("image_id"), F.lit(chunks)))
    return [keyed.where(F.col("_chunk") == c).drop("_chunk") for c in range(chunks)]


def check_unique_ids(inputs: DataFrame, table: str) -> None:
    duplicated = inputs.groupBy("image_id").count().where("count > 1").limit(5).collect()
    if duplicated:
        ids = [r["image_id"] for r in duplicated]
        raise ValueError(f"input table {table} has duplicate image_id values, e.g. {ids}")
