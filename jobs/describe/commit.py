"""The staging table beside a results table, and the write protocol between them.

Protocol per chunk (see docs/operations.md):

1. The engine's output for a chunk is written once to the staging table, partition
   ``(run_id, chunk)``, with ``replaceWhere`` (a retried write replaces, never duplicates).
   ``stage_chunk`` adds the partition column and the chunk's ``written_at``.
2. The staged rows are MERGEd into the results table on ``RESULT_KEYS``. A row only replaces an
   older row (``written_at``), so merging the same staged rows twice changes nothing, and the
   MERGE runs under a Delta ``txnAppId``/``txnVersion`` so a committed one is skipped on retry.
3. The staged partition is deleted.

A crash between 1 and 3 leaves staged rows behind; the next run merges them first
(``recover_staged``), so the GPU work they hold is not lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobs.tables.delta_io import (
    ConcurrentWriteError,
    comment_columns,
    create_table_if_missing,
    delta_table,
    delta_txn,
    has_log_folder,
    is_path,
    sql_str,
    table_exists,
    with_concurrency_retries,
)
from jobs.tables.layout import BUCKET, ResultsLayout, create_results_table, results_layout
from jobs.tables.results import (
    RESULT_COLUMN_COMMENTS,
    RESULT_KEYS,
    RESULTS_SCHEMA_DDL,
    tally_groups,
    tally_of,
)
from udfs.outputs.tally import Tally

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("candid.staging")

STAGING_SCHEMA_DDL = RESULTS_SCHEMA_DDL + ", `chunk` INT"
STAGING_PARTITIONS = ("run_id", "chunk")
# Columns the staging module adds to every staged row (``stage_chunk``), never its callers.
STAGED_COLUMNS = ("written_at", "chunk")
TXN_APP_PREFIX = "candid-merge-"
# What Delta says to a creator that finds another creator's empty _delta_log folder.
HALF_CREATED_ERRORS = ("DELTA_TABLE_NOT_FOUND", "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION")


def staging_table_for(results_table: str) -> str:
    """The staging table beside the results table (a sibling path or a sibling name)."""
    return results_table.rstrip("/") + ("_staging" if is_path(results_table) else "__staging")


def ensure_tables(
    spark: SparkSession, results_table: str, attempts: int = 6, base_delay_s: float = 0.5
) -> str:
    """Create the results and staging tables unless they exist; returns the staging table.

    Two runs starting at once on a new table race to commit its first version. The loser gets
    a Delta conflict or, while the winner has made ``_delta_log/`` but not yet committed to
    it, ``DELTA_TABLE_NOT_FOUND`` / ``DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION``; all are
    retried until the winner's table is visible."""
    staging = staging_table_for(results_table)
    creators: tuple[tuple[str, Callable[[], None]], ...] = (
        (results_table, lambda: create_results_table(spark, results_table, RESULTS_SCHEMA_DDL)),
        (staging, lambda: create_table_if_missing(
            spark, staging, STAGING_SCHEMA_DDL, STAGING_PARTITIONS)),
    )
    for ref, create in creators:
        half_created = _half_created_check(spark, ref)
        try:
            with_concurrency_retries(
                create, what=f"create {ref}", attempts=attempts, base_delay_s=base_delay_s,
                also_retry=half_created,
            )
        except ConcurrentWriteError as err:
            if err.__cause__ is None or not half_created(err.__cause__):
                raise
            # A ConcurrentWriteError, so the CLI reports it in one line like other conflicts.
            raise ConcurrentWriteError(
                f"{ref}: its _delta_log folder exists but holds no commit. Another job may be "
                "creating the table right now, or a creator crashed before its first commit; "
                "if no other job writes to it, delete the empty _delta_log folder and rerun"
            ) from err
    comment_columns(spark, results_table, RESULT_COLUMN_COMMENTS)
    return staging


def _half_created_check(spark: SparkSession, ref: str) -> Callable[[BaseException], bool]:
    """A predicate: is this error Delta's answer for a table whose ``_delta_log/`` exists
    without a commit in it (yet)? A plain folder of other files is *not* retried."""

    def half_created(err: BaseException) -> bool:
        if not any(code in str(err) for code in HALF_CREATED_ERRORS):
            return False
        return has_log_folder(spark, ref) if is_path(ref) else True

    return half_created


def stage_chunk(rows: DataFrame, staging_table: str, run_id: str, chunk: int) -> None:
    """Write one chunk's result rows to its staging partition (runs the engine: the only
    action that does). Replaces the partition, so a retried write leaves exactly one copy.

    The staging table's own columns are added here, not by callers: ``chunk`` (the partition)
    and ``written_at``, one timestamp for every row of the chunk (Spark fixes
    ``current_timestamp()`` once per query), which the MERGE compares to keep the newer row."""
    from pyspark.sql import functions as F

    owned = [c for c in STAGED_COLUMNS if c in rows.columns]
    if owned:
        raise ValueError(f"rows to stage must not carry {owned}: stage_chunk adds them")
    staged = rows.withColumn("written_at", F.current_timestamp()).withColumn(
        "chunk", F.lit(int(chunk)).cast("int"))
    writer = (
        staged.write.format("delta").mode("overwrite")
        # JSON-mode prompts add a typed `structured` column on first use.
        .option("mergeSchema", "true")
        .option("replaceWhere", f"run_id = '{sql_str(run_id)}' AND chunk = {int(chunk)}")
    )
    with_concurrency_retries(
        lambda: writer.save(staging_table) if is_path(staging_table)
        else writer.saveAsTable(staging_table),
        what=f"stage chunk {chunk}",
    )


def read_staged(spark: SparkSession, staging_table: str, run_id: str, chunk: int) -> DataFrame:
    from pyspark.sql import functions as F

    return (
        delta_table(spark, staging_table).toDF()
        .where((F.col("run_id") == run_id) & (F.col("chunk") == chunk))
        .drop("chunk")
    )


@dataclass(frozen=True)
class StagedCounts:
    """One aggregation over a staged chunk: its tally, and the buckets of ``layout`` (the
    results table's when counted) that its rows go to (none in a table without buckets)."""

    tally: Tally
    layout: ResultsLayout
    buckets: tuple[int, ...]


def count_staged(spark: SparkSession, results_table: str, staged: DataFrame) -> StagedCounts:
    """The staged rows' tally and buckets in one Spark aggregation (the MERGE needs the buckets
    to prune, the run's figures need the tally)."""
    layout = results_layout(spark, results_table)
    by = (BUCKET,) if layout.buckets is not None else ()
    groups = tally_groups(layout.with_bucket(staged), *by)
    buckets = tuple(sorted({int(g[BUCKET]) for g in groups})) if by else ()
    return StagedCounts(tally_of(groups), layout, buckets)


@dataclass
class CommittedChunk:
    """What one committed chunk held: its tally and a sample of its rows."""

    tally: Tally = field(default_factory=Tally)
    sample: Any = None


def commit_chunk(
    spark: SparkSession, rows: DataFrame, results_table: str, run_id: str, chunk: int,
    sample_rows: int = 0,
    watch_staging: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> CommittedChunk:
    """The whole protocol for one chunk: stage ``rows`` (result rows without ``written_at`` and
    ``chunk``; the only action that evaluates them, inside ``watch_staging()``, e.g. a
    progress watcher), then ``commit_staged``."""
    staging = staging_table_for(results_table)
    with watch_staging():
        stage_chunk(rows, staging, run_id, chunk)
    return commit_staged(spark, results_table, run_id, chunk, sample_rows)


def commit_staged(
    spark: SparkSession, results_table: str, run_id: str, chunk: int, sample_rows: int = 0
) -> CommittedChunk:
    """Steps 2 and 3 for a chunk already staged: count what was staged, MERGE it into the
    results table, and drop the staged partition. Safe to run while another chunk of the same
    run is being staged (each touches only its own staging partition)."""
    staging = staging_table_for(results_table)
    staged = read_staged(spark, staging, run_id, chunk)
    counts = count_staged(spark, results_table, staged)
    done = CommittedChunk(tally=counts.tally)
    if sample_rows > 0:
        done.sample = staged.limit(sample_rows).toPandas()
    if done.tally.rows:
        merge_staged(spark, results_table, staged, run_id, chunk, counts)
        log.info("chunk %d: merged %d rows into %s", chunk, done.tally.rows, results_table)
    drop_staged(spark, staging, run_id, chunk)
    return done


def merge_staged(
    spark: SparkSession, results_table: str, staged: DataFrame, run_id: str, chunk: int,
    counts: StagedCounts | None = None,
) -> None:
    """Upsert staged rows into the results table, idempotently (see module docstring). In a
    bucketed table (``jobs.tables.layout``) the MERGE reads and rewrites only the staged rows'
    buckets: ``counts.buckets`` when counted under the table's current layout, else looked up."""

    def merge() -> None:
        # The layout is read per attempt: a table rewritten into buckets meanwhile
        # (relayout_results) must get rows with their bucket.
        layout = results_layout(spark, results_table)
        source = layout.with_bucket(staged)
        if counts is not None and counts.layout == layout:
            present: Sequence[int] = counts.buckets
        else:
            present = layout.buckets_in(source)
        condition = layout.merge_condition(RESULT_KEYS, present)
        # One app id per staged partition: Delta skips a txnVersion that is not above the
        # last one seen for an app id, so numbering the partitions of one app id would make
        # any out-of-order merge (recovery, the dedup copies) silently skip.
        with delta_txn(spark, f"{TXN_APP_PREFIX}{run_id}-{chunk}", 0):
            (
                delta_table(spark, results_table).alias("t")
                .merge(source.alias("s"), condition)
                .withSchemaEvolution()
                .whenMatchedUpdateAll(condition="s.written_at > t.written_at")
                .whenNotMatchedInsertAll()
                .execute()
            )

    with_concurrency_retries(merge, what=f"merge chunk {chunk} into {results_table}")


def drop_staged(spark: SparkSession, staging_table: str, run_id: str, chunk: int) -> None:
    with_concurrency_retries(
        lambda: delta_table(spark, staging_table).delete(
            f"run_id = '{sql_str(run_id)}' AND chunk = {int(chunk)}"
        ),
        what=f"clear staged chunk {chunk}",
    )


def recover_staged(spark: SparkSession, results_table: str) -> int:
    """Merge and clear staged partitions that an earlier, interrupted run left behind.
    Returns the number of rows recovered."""
    staging = staging_table_for(results_table)
    if not table_exists(spark, staging):
        return 0
    leftovers = delta_table(spark, staging).toDF().select(*STAGING_PARTITIONS).distinct().collect()
    recovered = 0
    for row in leftovers:
        staged = read_staged(spark, staging, row.run_id, row.chunk)
        count = staged.count()
        log.warning(
            "recovering %d staged rows of run %s chunk %d left by an interrupted run",
            count, row.run_id, row.chunk,
        )
        merge_staged(spark, results_table, staged, row.run_id, row.chunk)
        drop_staged(spark, staging, row.run_id, row.chunk)
        recovered += count
    return recovered


