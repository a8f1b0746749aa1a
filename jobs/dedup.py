"""Describe identical images once: rows that share ``content_sha256`` (stored by ingest) get a
copy of one described row's result, for the same prompt version and model.

Two moments use it:

- before processing, rows whose bytes were already described successfully (an earlier run, any
  image_id) are copied from that result;
- of the rows still pending, one representative per hash goes to the engine; after the chunks
  are committed the other rows are copied from the representative's result, whatever its
  status (the same bytes fail the same way).

A copy keeps its own image_id, path and attempts, gets this run's run_id and a fresh
written_at, and names its donor in ``reused_from``. Copies go through the same staging + MERGE
protocol as described rows (``jobs.results``), so they are crash-safe and idempotent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs import results as results_io

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

HASH = "content_sha256"
# Staging partitions for copies (real chunks are numbered from 0).
REUSE_CHUNK = -1
FANOUT_CHUNK = -2
_OWN_COLUMNS = ("image_id", "path", "attempts", "run_id", "written_at", "reused_from")


def split_representatives(pending: "DataFrame") -> tuple["DataFrame", "DataFrame"]:
    """(representatives, duplicates): the smallest image_id of each hash represents it; rows
    without a hash represent themselves."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rank = F.row_number().over(Window.partitionBy(HASH).orderBy("image_id"))
    ranked = pending.withColumn(
        "_rank", F.when(F.col(HASH).isNull(), F.lit(1)).otherwise(rank)
    )
    first = F.col("_rank") == 1
    return ranked.where(first).drop("_rank"), ranked.where(~first).drop("_rank")


def copy_from_donors(
    spark: "SparkSession",
    donors: "DataFrame",
    targets: "DataFrame",
    results_table: str,
    run_id: str,
    chunk: int,
) -> dict[str, int]:
    """Give every target row (image_id, path, attempts, content_sha256) whose hash has a donor a
    copy of the best donor's result (ok first, then newest). Returns status counts."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    best = Window.partitionBy(HASH).orderBy(
        (F.col("status") == "ok").desc(), F.col("written_at").desc(), F.col("image_id")
    )
    chosen = (
        donors.where(F.col(HASH).isNotNull())
        .withColumn("_rank", F.row_number().over(best)).where(F.col("_rank") == 1)
        .withColumn("reused_from", F.col("image_id"))
        .drop("_rank", *[c for c in _OWN_COLUMNS if c != "reused_from"])
    )
    copies = (
        targets.select("image_id", "path", "attempts", HASH)
        .join(chosen, HASH, "inner")
        .withColumn("run_id", F.lit(run_id))
        .withColumn("written_at", F.current_timestamp())
        .withColumn("chunk", F.lit(chunk).cast("int"))
    )
    return results_io.commit_chunk(spark, copies, results_table, run_id, chunk).counts
