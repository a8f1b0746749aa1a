"""The results table's layout: partitioned by a bucket of the image id's hash, with chunks made
of whole buckets, so that each chunk's MERGE reads and rewrites only its own buckets' files and
stays as cheap at 50 M rows as at 50 k.

``bucket = pmod(xxhash64(image_id), B)`` with ``B`` recorded in the table property
``candid.buckets`` when the table is created (1024 by default; a table keeps its own count).
A run splits its pending rows into ``ChunkPlan.count`` chunks by the same hash:

- up to ``B`` chunks: chunk ``c`` holds the buckets ``b`` with ``b % count == c``;
- more: the count is rounded up to a multiple of ``B``, and each chunk is a slice of one
  bucket (``pmod(xxhash64(image_id), count)``, whose remainder by ``B`` is the bucket).

Either way a chunk knows its buckets before it runs, and the MERGE condition names them
(``t.bucket IN (...)``): Delta skips every other partition's files, and two MERGEs of
different buckets do not conflict.

Results tables created before buckets existed (no ``bucket`` partition) keep working: their
MERGE matches on the key alone, as before, and its cost grows with the table.
``relayout_results`` rewrites such a table once into the bucketed layout (docs/operations.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.tables.delta_io import (
    comment_literal,
    create_table_if_missing,
    delta_table,
    is_path,
    read_table,
    sql_table_ref,
    table_exists,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger("candid.layout")

BUCKET = "bucket"
BUCKET_COMMENT = ("Hash bucket of image_id: the partition column that keeps each MERGE to the "
                  "files of the buckets a chunk touches.")
BUCKETS_PROPERTY = "candid.buckets"
# 1024 partitions: a 12.8 M-row run in 100 k-row chunks gives each chunk 8 whole buckets, and a
# bucket of one prompt version holds ~12 k rows, a file size Parquet handles well.
DEFAULT_BUCKETS = 1024
_ID = "image_id"
# The audit table of a results table named by a path sits beside it, with this suffix.
AUDIT_SUFFIX = "_audit"


def bucket_column(buckets: int) -> Column:
    """The bucket of each row's ``image_id``."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(F.col(_ID)), F.lit(buckets)).cast("int")


@dataclass(frozen=True)
class ChunkPlan:
    """How a run's pending rows are split into chunks of whole buckets (or bucket slices).

    >>> plan = ChunkPlan.for_rows(1_000_000, chunk_size=100_000, buckets=1024)
    >>> plan.count, plan.buckets_of(3)[:3], len(plan.buckets_of(3))
    (10, (3, 13, 23), 103)
    >>> big = ChunkPlan.for_rows(12_800_000, chunk_size=10_000, buckets=1024)
    >>> big.count, big.buckets_of(1025)
    (2048, (1,))
    """

    count: int
    buckets: int

    @classmethod
    def for_rows(cls, rows: int, chunk_size: int, buckets: int) -> ChunkPlan:
        wanted = max(1, math.ceil(rows / chunk_size))
        if wanted <= buckets:
            return cls(wanted, buckets)
        return cls(buckets * math.ceil(wanted / buckets), buckets)

    def chunk_column(self) -> Column:
        """Each row's chunk number, from the same hash as its bucket."""
        from pyspark.sql import functions as F

        if self.count <= self.buckets:
            return F.pmod(bucket_column(self.buckets), F.lit(self.count))
        return F.pmod(F.xxhash64(F.col(_ID)), F.lit(self.count))

    def buckets_of(self, chunk: int) -> tuple[int, ...]:
        """The buckets that chunk ``chunk``'s rows fall into."""
        if self.count <= self.buckets:
            return tuple(range(chunk, self.buckets, self.count))
        return (chunk % self.buckets,)


@dataclass(frozen=True)
class ResultsLayout:
    """A results table's bucket count, or None for a table from before buckets."""

    buckets: int | None

    def with_bucket(self, rows: DataFrame) -> DataFrame:
        """``rows`` with their bucket column, when the table has one (any value they carry, e.g.
        a donor's in a copy, is replaced)."""
        if self.buckets is None:
            return rows
        return rows.withColumn(BUCKET, bucket_column(self.buckets))

    def merge_condition(self, keys: Sequence[str], present: Sequence[int] = ()) -> str:
        """Target ``t`` matches source ``s`` on ``keys``; in a bucketed table also on the bucket,
        and only within the ``present`` buckets, a condition on the target alone from which
        Delta prunes the other partitions' files."""
        condition = " AND ".join(f"t.`{key}` = s.`{key}`" for key in keys)
        if self.buckets is None:
            return condition
        condition += f" AND t.`{BUCKET}` = s.`{BUCKET}`"
        if present:
            condition += f" AND t.`{BUCKET}` IN ({', '.join(str(int(b)) for b in present)})"
        return condition

    def buckets_in(self, rows: DataFrame) -> list[int]:
        """The distinct buckets of ``rows`` (at most ``buckets`` values reach the driver)."""
        if self.buckets is None:
            return []
        return sorted(r[0] for r in rows.select(BUCKET).distinct().collect())


def results_layout(spark: SparkSession, table: str) -> ResultsLayout:
    """The layout of an existing results table, read from its Delta metadata."""
    detail = delta_table(spark, table).detail().select("partitionColumns", "properties").first()
    if BUCKET not in (detail["partitionColumns"] or []):
        return ResultsLayout(None)
    recorded = (detail["properties"] or {}).get(BUCKETS_PROPERTY)
    if recorded is None:
        raise ValueError(
            f"{table} is partitioned by {BUCKET} but has no {BUCKETS_PROPERTY} table property: "
            f"set it to the bucket count its rows were written with (ALTER TABLE ... SET "
            f"TBLPROPERTIES ('{BUCKETS_PROPERTY}' = 'N'))"
        )
    return ResultsLayout(int(recorded))


def create_results_table(spark: SparkSession, ref: str, schema_ddl: str) -> None:
    """Create a bucketed results table unless the table exists (in whatever layout)."""
    create_table_if_missing(
        spark, ref, f"{schema_ddl}, `{BUCKET}` INT COMMENT {comment_literal(BUCKET_COMMENT)}",
        (BUCKET,),
        properties={BUCKETS_PROPERTY: str(DEFAULT_BUCKETS)},
    )


def relayout_results(spark: SparkSession, table: str, buckets: int = DEFAULT_BUCKETS) -> bool:
    """Rewrite a results table from before buckets into the bucketed layout, once (every row
    is rewritten; the old layout stays in the table's Delta history). Run it while no describe
    run writes to the table. Returns False when the table was bucketed already."""
    if not table_exists(spark, table) or results_layout(spark, table).buckets is not None:
        return False
    target = sql_table_ref(table)
    # The property first: until the rewrite commits, a table without the partition is still
    # read as unbucketed, so a crash in between leaves a working table.
    spark.sql(f"ALTER TABLE {target} SET TBLPROPERTIES ('{BUCKETS_PROPERTY}' = '{buckets}')")
    rows = ResultsLayout(buckets).with_bucket(read_table(spark, table))
    writer = (
        rows.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        .partitionBy(BUCKET)
    )
    if is_path(table):
        writer.save(table)
    else:
        writer.saveAsTable(table)
    log.warning("rewrote %s into %d buckets", table, buckets)
    return True


def audit_table_beside(results_table: str) -> str | None:
    """``<results>_audit``, the audit table's default place beside a results table named by a
    path; None for a metastore name (the user names the audit table then)."""
    return results_table.rstrip("/") + AUDIT_SUFFIX if is_path(results_table) else None
