"""Which input rows a describe run describes, and in which chunks.

A row is pending when this prompt version and model have no current final result for it: no
row yet, a retryable failure with attempts left (``RetryPolicy``), or, with ``--replace``, a row
that another run fingerprint made (``ResultScope.current``). Both tables are read at fixed
Delta versions, so the plan does not move while the run writes to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.describe.start import DescribeRun
from jobs.tables.delta_io import latest_version
from jobs.tables.inputs import read_inputs
from jobs.tables.layout import DEFAULT_BUCKETS, ChunkPlan, results_layout
from jobs.tables.results import RetryPolicy

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class PendingPlan:
    """The run's pending rows, cached while the plan is used as a context manager, and the
    counts and table versions they were planned from."""

    input_version: int
    results_version: int
    pending: DataFrame
    rows_in: int
    rows_pending: int

    def __enter__(self) -> PendingPlan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.pending.unpersist()


def plan_pending(spark: SparkSession, run: DescribeRun) -> PendingPlan:
    """Read both tables at their current versions and plan the run's pending rows."""
    config = run.config
    input_version = latest_version(spark, config.input_table)
    inputs = read_inputs(spark, config, version=input_version)
    check_unique_ids(inputs, config.input_table)
    results_version = latest_version(spark, config.results_table)
    done = current_rows(spark, run, results_version)
    pending = pending_rows(inputs, done, run.retry).cache()
    return PendingPlan(
        input_version, results_version, pending,
        rows_in=inputs.count(), rows_pending=pending.count(),
    )


def current_rows(spark: SparkSession, run: DescribeRun, version: int | None = None) -> DataFrame:
    """The scope's rows that this run's fingerprint made (optionally at a fixed version)."""
    return run.scope.rows(spark, version).where(
        run.scope.current(run.fingerprint, run.prompt.content_hash())
    )


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


@dataclass(frozen=True)
class Chunk:
    """One chunk of a run: its number, its rows, and the results table buckets they fall in."""

    index: int
    rows: DataFrame
    buckets: tuple[int, ...]


def split_chunks(
    spark: SparkSession, rows: DataFrame, count: int, chunk_size: int, results_table: str
) -> list[Chunk]:
    """Deterministic chunks of at most about ``chunk_size`` rows, made of whole buckets of the
    results table (``jobs.tables.layout``): the same rows land in the same chunk on a rerun, and
    each chunk's MERGE touches only its own buckets."""
    from pyspark.sql import functions as F

    if not count:
        return []
    # A table from before buckets still gets chunks of whole (default) buckets: harmless.
    buckets = results_layout(spark, results_table).buckets or DEFAULT_BUCKETS
    plan = ChunkPlan.for_rows(count, chunk_size, buckets)
    keyed = rows.withColumn("_chunk", plan.chunk_column())
    return [
        Chunk(c, keyed.where(F.col("_chunk") == c).drop("_chunk"), plan.buckets_of(c))
        for c in range(plan.count)
    ]


def check_unique_ids(inputs: DataFrame, table: str) -> None:
    duplicated = inputs.groupBy("image_id").count().where("count > 1").limit(5).collect()
    if duplicated:
        ids = [r["image_id"] for r in duplicated]
        raise ValueError(f"input table {table} has duplicate image_id values, e.g. {ids}")
