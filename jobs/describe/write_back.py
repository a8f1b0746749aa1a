"""Optionally, descriptions back onto the input table: one column per prompt version
(``description_v2``), added by schema evolution on first use.

Only rows whose value is new or different are written: the MERGE updates a row only when its
column differs (null-safe) from the current ok description, and a MERGE that updates nothing
commits nothing, so a rerun with nothing new leaves the input table's version unchanged.
Rows are matched on the input table's own id column (or its path column when ids are derived
from paths, ``jobs.tables.inputs.write_back_key``); nothing else in the table is touched.

When:

- after each chunk commits, that chunk's rows (``source_column.every_chunk``; by default only
  when the input table has deletion vectors, which let an update write just the changed rows);
- once at the end of the run, every current ok row of the scope: copies of identical images,
  chunks recovered from an interrupted run, a chunk whose write-back lost to other writers, and
  rows described before write-back was enabled. On a rerun this pass finds nothing to change.

The input table usually belongs to someone else who appends to it meanwhile; a MERGE that
meets their commit fails with a Delta conflict and is retried (``with_concurrency_retries``).
A chunk's write-back that loses every retry is left to the end-of-run pass, which raises.

An append-only input table (``delta.appendOnly=true``) refuses every update: its write-back is
skipped with a message, and the descriptions stay in the results table.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from jobs.commandline.console import Reporter
from jobs.describe.pending import Chunk, current_rows
from jobs.describe.start import DescribeRun
from jobs.tables.delta_io import ConcurrentWriteError, delta_table, with_concurrency_retries
from jobs.tables.inputs import quoted, write_back_key
from jobs.tables.layout import BUCKET, results_layout

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("candid.write_back")

DELETION_VECTORS = "delta.enableDeletionVectors"
APPEND_ONLY = "delta.appendOnly"


def description_column(run: DescribeRun) -> str:
    """The input table column this run's descriptions go to."""
    return f"{run.config.source_column.column_prefix}{run.prompt.version}"


def write_back_chunk(spark: SparkSession, run: DescribeRun, chunk: Chunk) -> None:
    """Write a just-committed chunk's ok descriptions onto the input table (when enabled for
    every chunk); a write-back that loses to other writers is left to the end of the run."""
    from pyspark.sql import functions as F

    if not run.config.source_column.enabled:
        return
    flags = _table_flags(spark, run.config.input_table)  # read once: each read is a Spark job
    if _append_only(flags) or not _every_chunk(run, flags):
        return  # an append-only table is reported once, by the end-of-run pass
    rows = _current_ok(spark, run)
    if results_layout(spark, run.scope.table).buckets is not None:
        rows = rows.where(F.col(BUCKET).isin(list(chunk.buckets)))  # prunes the partitions
    rows = rows.join(chunk.rows.select("image_id"), "image_id", "left_semi")
    try:
        changed = merge_descriptions(spark, run, rows)
    except ConcurrentWriteError as err:
        log.warning("write-back of chunk %d left to the end of the run: %s", chunk.index, err)
        return
    log.info("chunk %d: %d rows of %s written back", chunk.index, changed, run.config.input_table)


def write_back(spark: SparkSession, run: DescribeRun, reporter: Reporter) -> None:
    """Bring the input table's column up to date with every current ok description of this
    scope (when enabled); commits nothing when it already is."""
    if not run.config.source_column.enabled:
        return
    column, table = description_column(run), run.config.input_table
    flags = _table_flags(spark, table)
    if _append_only(flags):
        message = (f"[describe] {column} not written onto {table}: the table is append-only "
                   f"({APPEND_ONLY}=true); the descriptions are in {run.scope.table}. Unset "
                   "source_column.enabled to silence this, or lift the property to write back")
        log.warning(message)
        reporter.phase(message)
        return
    if _every_chunk(run, flags):
        # Each chunk was written back after its commit; this pass catches what a chunk's
        # write-back lost to other writers, and commits nothing when there is none.
        reporter.phase(f"[describe] {column} was written onto {table} after each chunk")
        changed = merge_descriptions(spark, run, _current_ok(spark, run))
        if changed:
            reporter.phase(f"[describe] {changed} more rows of {table} brought up to date")
        return
    reporter.phase(f"[describe] writing {column} onto {table} (once, at the end: the table has"
                   " no deletion vectors; source_column.every_chunk)")
    changed = merge_descriptions(spark, run, _current_ok(spark, run))
    reporter.phase(f"[describe] {changed} rows of {table} got a new or changed {column}")


def merge_descriptions(spark: SparkSession, run: DescribeRun, rows: DataFrame) -> int:
    """MERGE the ``description`` of result ``rows`` into the input table's column where it
    differs; returns the number of input rows updated (0: nothing was committed)."""
    from pyspark.sql import functions as F

    table, column = run.config.input_table, description_column(run)
    key, canonical = write_back_key(run.config.input)

    def merge() -> int:
        target = delta_table(spark, table)
        schema = target.toDF().schema
        source = rows.select(
            # The input table's own key type (a numeric id, say), so the match is exact.
            F.col(canonical).cast(schema[key].dataType).alias(key),
            F.col("description").alias(column),
        )
        changed = f"NOT (t.{quoted(column)} <=> s.{quoted(column)})"
        metrics = (
            target.alias("t")
            .merge(source.alias("s"), f"t.{quoted(key)} = s.{quoted(key)}")
            .withSchemaEvolution()  # the column is added on first use
            .whenMatchedUpdate(
                condition=changed if column in schema.names else None,
                set={quoted(column): f"s.{quoted(column)}"},
            )
            .execute()
        )
        return int(metrics.first()["num_updated_rows"]) if metrics is not None else 0

    # Two runs of different prompt versions both evolve the schema (MetadataChangedException),
    # and the table's owner appends to it (ConcurrentAppendException): both are retried.
    return with_concurrency_retries(merge, what=f"write {column} into {table}")


def _current_ok(spark: SparkSession, run: DescribeRun) -> DataFrame:
    from pyspark.sql import functions as F

    return current_rows(spark, run).where(F.col("status") == "ok")


def _every_chunk(run: DescribeRun, flags: dict[str, str]) -> bool:
    setting = run.config.source_column.every_chunk
    if setting != "auto":
        return setting == "always"
    return _flag(flags, DELETION_VECTORS)


def _append_only(flags: dict[str, str]) -> bool:
    return _flag(flags, APPEND_ONLY)


def _table_flags(spark: SparkSession, table: str) -> dict[str, str]:
    """The Delta table's properties (one ``DESCRIBE DETAIL``)."""
    return dict(delta_table(spark, table).detail().first()["properties"] or {})


def _flag(properties: dict[str, str], name: str) -> bool:
    """A boolean Delta table property (false when unset)."""
    return str(properties.get(name, "false")).lower() == "true"
