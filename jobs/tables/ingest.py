"""Ingest: a manifest or a folder of images into the input Delta table.

One row per image: a stable ``image_id`` (the manifest's own id, or derived from the path by
``jobs.tables.inputs.image_id_for``), the ``path``, the ``source`` it came from, and ``ingested_at``
(and ``content_sha256`` when ``hash_content``). Re-ingesting the same images adds nothing: rows
are MERGEd on ``image_id`` and only new ids are inserted.

Manifests (.txt, .csv, .jsonl, Parquet, a Delta table) are read by Spark's own readers on the
executors and ids are derived in Spark SQL, so the driver never holds the list of paths: 12.8 M
lines cost the driver what 12 lines do. A folder is listed on the driver (``os.walk``, or
fsspec's ``find`` for URLs): fine for a local folder of thousands of files; list a bucket of
millions into a manifest instead (docs/operations.md).

The table is created with deletion vectors on, so that a describe run's write-back of each
chunk (``jobs.describe.write_back``) writes only the rows it changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.config import IngestConfig
from jobs.tables.delta_io import create_table_if_missing, delta_table, read_table, table_exists
from jobs.tables.inputs import image_id_column, image_id_for, quoted
from udfs.images.sources import local_path, url_scheme

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["INPUT_SCHEMA_DDL", "IngestSummary", "image_id_for", "list_images", "run_ingest",
           "source_rows"]

INPUT_SCHEMA_DDL = (
    "image_id STRING NOT NULL, path STRING NOT NULL, source STRING, ingested_at TIMESTAMP, "
    "content_sha256 STRING"
)
# Deletion vectors: an update (the write-back) rewrites only the rows it changes, not every
# file that holds one of them. Readers need Delta 2.3+ (or a DV-aware engine).
INPUT_TABLE_PROPERTIES = {"delta.enableDeletionVectors": "true"}
MANIFEST_FORMATS = {".txt": "txt", ".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
_CORRUPT = "_corrupt_record"


@dataclass(frozen=True)
class IngestSummary:
    table: str
    found: int
    inserted: int
    table_rows: int


def source_format(spark: SparkSession, config: IngestConfig) -> str:
    """``config.source_format``, or for ``auto``: by the source's ending, else a Delta table if
    the source is one, else a folder."""
    if config.source_format != "auto":
        return config.source_format
    suffix = Path(config.source.split("?", 1)[0].rstrip("/")).suffix.lower()
    if suffix in MANIFEST_FORMATS:
        return MANIFEST_FORMATS[suffix]
    return "delta" if table_exists(spark, config.source) else "folder"


def list_images(config: IngestConfig) -> list[tuple[str, str]]:
    """(image_id, path) pairs of the images in a folder (on the driver), sorted by path.

    Raises:
        FileNotFoundError: the source does not exist.
    """
    source = config.source
    local = local_path(source)
    if local is not None:
        if not local.is_dir():
            raise FileNotFoundError(f"ingest source {source!r} is neither a folder nor a manifest")
        paths = _walk_local(local, config)
    else:
        paths = _walk_fsspec(source, config)
    return sorted(((image_id_for(p), p) for p in paths), key=lambda pair: pair[1])


def _walk_local(root: Path, config: IngestConfig) -> list[str]:
    wanted = {e.lower() for e in config.extensions}
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if not config.recursive:
            dirs.clear()
        found += [
            os.path.abspath(os.path.join(folder, f))
            for f in files
            if os.path.splitext(f)[1].lower() in wanted
        ]
    return found


def _walk_fsspec(url: str, config: IngestConfig) -> list[str]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    wanted = {e.lower() for e in config.extensions}
    names = fs.find(root, maxdepth=None if config.recursive else 1)
    protocol = url_scheme(url)
    return [
        fs.unstrip_protocol(n) if protocol else n
        for n in names
        if os.path.splitext(n)[1].lower() in wanted
    ]


def read_manifest(spark: SparkSession, config: IngestConfig, kind: str) -> DataFrame:
    """(image_id or null, path) records of a manifest, read by Spark. .txt: one path per line,
    blank lines and lines starting with '#' skipped; .csv (with a header), .jsonl, Parquet and
    Delta: columns ``path_column`` and optionally ``id_column``."""
    from pyspark.sql import functions as F

    source = config.source
    if kind == "txt":
        line = F.regexp_replace(F.col("value"), r"^\s+|\s+$", "")
        paths = spark.read.text(source).select(line.alias("path"))
        paths = paths.where((F.col("path") != "") & ~F.col("path").startswith("#"))
        return paths.select(F.lit(None).cast("string").alias("image_id"), "path")
    if kind == "csv":
        # RFC 4180 quoting ("" inside quotes), as Python's csv module reads it.
        frame = spark.read.option("header", "true").option("escape", '"').csv(source)
    elif kind == "jsonl":
        # A schema, not inference: inferring would read the whole manifest once more.
        schema = f"{quoted(config.path_column)} STRING, {quoted(config.id_column)} STRING"
        frame = spark.read.schema(f"{schema}, {_CORRUPT} STRING").json(source)
    elif kind == "parquet":
        frame = spark.read.parquet(source)
    else:
        frame = read_table(spark, source)
    if config.path_column not in frame.columns:
        raise ValueError(f"{source}: no column {config.path_column!r} (path_column); it has "
                         f"{', '.join(frame.columns)}")
    given = (
        F.col(quoted(config.id_column)).cast("string") if config.id_column in frame.columns
        else F.lit(None).cast("string")
    )
    path = F.col(quoted(config.path_column)).cast("string")
    return frame.select(given.alias("image_id"), path.alias("path"))


@contextmanager
def source_rows(spark: SparkSession, config: IngestConfig) -> Iterator[DataFrame]:
    """The source's (image_id, path) rows, one per id: given ids kept, missing ones derived from
    the path in Spark SQL (equal to ``image_id_for``). Persisted on the executors while the
    context is open (the checks, the count and the MERGE all read them).

    Raises:
        ValueError: a record has no path, or one id is given to two paths.
    """
    from pyspark import StorageLevel

    kind = source_format(spark, config)
    if kind == "folder":
        records = spark.createDataFrame(list_images(config), "image_id STRING, path STRING")
    else:
        records = read_manifest(spark, config, kind)
    unique = _one_row_per_id(records).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        _check_unique(unique, config.source)
        yield unique.select("image_id", "path")
    finally:
        unique.unpersist()


def _one_row_per_id(records: DataFrame) -> DataFrame:
    """Grouped by id; ``_other`` differs from ``path`` where an id has two paths, ``_no_path``
    is 1 where a record has none."""
    from pyspark.sql import functions as F

    no_path = F.col("path").isNull() | (F.col("path") == "")
    given = F.when(F.col("image_id") != "", F.col("image_id"))
    keyed = records.select(
        F.coalesce(given, image_id_column(F.col("path"))).alias("image_id"), "path",
        no_path.cast("int").alias("_no_path"),
    )
    return keyed.groupBy("image_id").agg(
        F.min("path").alias("path"), F.max("path").alias("_other"),
        F.max("_no_path").alias("_no_path"),
    )


def _check_unique(unique: DataFrame, source: str) -> None:
    from pyspark.sql import functions as F

    problems = unique.where(
        (F.col("_no_path") > 0) | (F.col("path") != F.col("_other")) | F.col("image_id").isNull()
    ).limit(1).collect()
    if not problems:
        return
    bad = problems[0]
    if bad["_no_path"] or bad["image_id"] is None:
        raise ValueError(f"{source}: a record has no path (or is not valid JSON)")
    raise ValueError(
        f"image_id {bad['image_id']!r} is given to two paths: {bad['path']!r} and "
        f"{bad['_other']!r}"
    )


def run_ingest(config: IngestConfig, spark: SparkSession) -> IngestSummary:
    """Read the source's rows and MERGE new ones into the input table (created if missing)."""
    create_table_if_missing(spark, config.table, INPUT_SCHEMA_DDL,
                            properties=INPUT_TABLE_PROPERTIES)
    with source_rows(spark, config) as rows:
        found = rows.count()
        inserted = _merge_new(spark, config, rows)
    total = delta_table(spark, config.table).toDF().count()
    return IngestSummary(table=config.table, found=found, inserted=inserted, table_rows=total)


def _merge_new(spark: SparkSession, config: IngestConfig, rows: DataFrame) -> int:
    """Insert the rows whose id the table lacks (hashing their files first when asked);
    returns how many were inserted."""
    from pyspark.sql import functions as F

    hashed = config.hash_content and "content_sha256" in read_table(spark, config.table).columns
    if hashed:
        # Read on the executors: the describe job describes identical bytes once.
        from functools import partial

        from udfs.runner.spark_udf import hash_partition

        partitions = max(1, spark.sparkContext.defaultParallelism)
        rows = rows.repartition(partitions, "image_id").mapInPandas(
            partial(hash_partition, max_bytes=config.max_file_bytes),
            "image_id STRING, path STRING, content_sha256 STRING",
        ).cache()  # the MERGE reads its source twice: each file is hashed once
    new = rows.select(
        "image_id", "path", F.lit(config.source).alias("source"),
        F.current_timestamp().alias("ingested_at"),
        *(["content_sha256"] if hashed else []),
    )
    try:
        metrics = (
            delta_table(spark, config.table).alias("t")
            .merge(new.alias("s"), "t.image_id = s.image_id")
            # Explicit columns: the table may have gained description columns since.
            .whenNotMatchedInsert(values={c: f"s.{c}" for c in new.columns})
            .execute()
        )
    finally:
        if hashed:
            rows.unpersist()
    return int(metrics.first()["num_inserted_rows"]) if metrics is not None else 0
