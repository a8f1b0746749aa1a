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
protocol as described rows (``jobs.describe.commit``), so they are crash-safe and idempotent. Donors
are rows of the run's own fingerprint only (``ResultScope.current``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.describe.commit import commit_chunk
from jobs.describe.pending import PendingPlan, current_rows
from jobs.describe.start import DescribeRun
from jobs.tables.delta_io import latest_version
from jobs.tables.inputs import HASH
from udfs.outputs.tally import Tally

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Staging partitions for copies (real chunks are numbered from 0).
REUSE_CHUNK = -1
FANOUT_CHUNK = -2
# A copy's own values, never the donor's: besides the target row's (image_id, path, attempts,
# carried input columns), these are made afresh (written_at by the staging, the bucket at the
# MERGE, from the image_id).
_FRESH_COLUMNS = ("run_id", "written_at", "bucket")


@dataclass(frozen=True)
class IdenticalReuse:
    """What the reuse step produced: the rows left to describe, the duplicates to copy once
    their representative is described (None: nothing to fan out), and what it copied."""

    to_describe: DataFrame
    duplicates: DataFrame | None
    copied: Tally


def reuse_identical(spark: SparkSession, run: DescribeRun, plan: PendingPlan) -> IdenticalReuse:
    """Copy earlier ok results of identical bytes onto pending rows, then split what is left
    into the rows to describe and the duplicates to copy after them."""
    from pyspark.sql import functions as F

    if HASH not in plan.pending.columns or not plan.rows_pending:
        return IdenticalReuse(plan.pending, None, Tally())
    donors = current_rows(spark, run, plan.results_version).where(F.col("status") == "ok")
    copied = copy_from_donors(
        spark, donors, plan.pending, run.scope.table, run.task.run_id, REUSE_CHUNK,
        run.config.input.extra_columns,
    )
    # At a fixed version: ``duplicates`` is evaluated again after the chunks commit, and must
    # not see the representatives described meanwhile (they would drop out of the ranking and
    # a duplicate would become a representative that nobody describes).
    after_copies = latest_version(spark, run.scope.table)
    done = current_rows(spark, run, after_copies).where(F.col("run_id") == run.task.run_id)
    remaining = plan.pending.join(done.select("image_id"), "image_id", "left_anti")
    return IdenticalReuse(*split_representatives(remaining), copied)


def fan_out_duplicates(
    spark: SparkSession, run: DescribeRun, duplicates: DataFrame | None
) -> Tally:
    """Give each duplicate its representative's result, whatever its status (the same bytes
    fail the same way); returns what was copied."""
    if duplicates is None:
        return Tally()
    return copy_from_donors(
        spark, current_rows(spark, run), duplicates, run.scope.table, run.task.run_id,
        FANOUT_CHUNK, run.config.input.extra_columns,
    )


def split_representatives(pending: DataFrame) -> tuple[DataFrame, DataFrame]:
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
    spark: SparkSession,
    donors: DataFrame,
    targets: DataFrame,
    results_table: str,
    run_id: str,
    chunk: int,
    carried: Sequence[str] = (),
) -> Tally:
    """Give every target row (image_id, path, attempts, content_sha256, and the ``carried``
    input columns) whose hash has a donor a copy of the best donor's result (ok first, then
    newest). Returns what was copied."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    best = Window.partitionBy(HASH).orderBy(
        (F.col("status") == "ok").desc(), F.col("written_at").desc(), F.col("image_id")
    )
    own = ["image_id", "path", "attempts", *carried]
    chosen = (
        donors.where(F.col(HASH).isNotNull())
        .withColumn("_rank", F.row_number().over(best)).where(F.col("_rank") == 1)
        .withColumn("reused_from", F.col("image_id"))
        .drop("_rank", *own, *_FRESH_COLUMNS)
    )
    copies = (
        targets.select(*own, HASH)
        .join(chosen, HASH, "inner")
        .withColumn("run_id", F.lit(run_id))
    )
    if copies.isEmpty():
        # Nothing to copy (a first run, no duplicates): staging, counting and dropping an
        # empty partition would cost three Spark jobs for nothing.
        return Tally()
    return commit_chunk(spark, copies, results_table, run_id, chunk).tally
