"""Ingest: a folder of images or a manifest file into the input Delta table.

One row per image: a stable ``image_id`` (from the path, or the manifest's own id), the
``path``, the ``source`` it came from, and ``ingested_at``. Re-ingesting the same images adds
nothing: rows are MERGEd on ``image_id`` and only new ids are inserted.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.config import IngestConfig
from jobs.delta_io import create_table_if_missing, delta_table
from udfs.sources import local_path, url_scheme

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

INPUT_SCHEMA_DDL = (
    "image_id STRING NOT NULL, path STRING NOT NULL, source STRING, ingested_at TIMESTAMP, "
    "content_sha256 STRING"
)
MANIFEST_SUFFIXES = {".txt", ".csv", ".jsonl"}


@dataclass(frozen=True)
class IngestSummary:
    table: str
    found: int
    inserted: int
    table_rows: int


def image_id_for(path: str) -> str:
    """Stable id from the path string: the same path always gets the same id."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:24]


def list_images(config: IngestConfig) -> list[tuple[str, str]]:
    """(image_id, path) pairs from the folder or manifest, sorted by path, ids unique.

    Raises:
        FileNotFoundError: the source does not exist.
        ValueError: a manifest is malformed or gives one id to two paths.
    """
    source = config.source
    local = local_path(source)
    if local is not None and local.is_file() and local.suffix.lower() in MANIFEST_SUFFIXES:
        pairs = _read_manifest(local)
    elif local is not None:
        if not local.is_dir():
            raise FileNotFoundError(f"ingest source {source!r} is neither a folder nor a manifest")
        pairs = [(image_id_for(p), p) for p in _walk_local(local, config)]
    else:
        pairs = [(image_id_for(p), p) for p in _walk_fsspec(source, config)]
    return _unique(sorted(pairs, key=lambda pair: pair[1]))


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


def _read_manifest(path: Path) -> list[tuple[str, str]]:
    """.txt: one path per line; .csv: columns `path` and optional `image_id`; .jsonl: objects
    with `path` and optional `image_id`. Blank lines and lines starting with '#' are skipped."""
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        records = [{"path": line.strip()} for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    elif suffix == ".csv":
        records = list(csv.DictReader(text.splitlines()))
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: invalid JSON: {err}") from None
    pairs = []
    for number, record in enumerate(records, start=1):
        image_path = (record or {}).get("path")
        if not image_path:
            raise ValueError(f"{path}: record {number} has no 'path'")
        pairs.append((str(record.get("image_id") or image_id_for(image_path)), str(image_path)))
    return pairs


def _unique(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for image_id, path in pairs:
        if image_id in seen and seen[image_id] != path:
            raise ValueError(
                f"image_id {image_id!r} is given to two paths: {seen[image_id]!r} and {path!r}"
            )
        seen[image_id] = path
    return list(seen.items())


def run_ingest(config: IngestConfig, spark: SparkSession) -> IngestSummary:
    """List the images and MERGE new ones into the input table (created if missing)."""
    from pyspark.sql import functions as F

    pairs = list_images(config)
    create_table_if_missing(spark, config.table, INPUT_SCHEMA_DDL)
    # Counted, not read from the MERGE's metrics: a MERGE that inserts nothing commits nothing.
    before = delta_table(spark, config.table).toDF().count()
    rows = spark.createDataFrame(pairs, "image_id STRING, path STRING")
    if config.hash_content and "content_sha256" in delta_table(spark, config.table).toDF().columns:
        # Read on the executors: the describe job describes identical bytes once.
        from functools import partial

        from udfs.spark_udf import hash_partition

        partitions = max(1, spark.sparkContext.defaultParallelism)
        rows = rows.repartition(partitions, "image_id").mapInPandas(
            partial(hash_partition, max_bytes=config.max_file_bytes),
            "image_id STRING, path STRING, content_sha256 STRING",
        )
    rows = rows.select(
        "image_id", "path", F.lit(config.source).alias("source"),
        F.current_timestamp().alias("ingested_at"),
        *(["content_sha256"] if "content_sha256" in rows.columns else []),
    )
    # The MERGE reads its source twice; cache it so each file is hashed once.
    rows = rows.cache()
    rows.count()
    (
        delta_table(spark, config.table).alias("t")
        .merge(rows.alias("s"), "t.image_id = s.image_id")
        # Explicit columns: the table may have gained description columns since it was created.
        .whenNotMatchedInsert(values={c: f"s.{c}" for c in rows.columns})
        .execute()
    )
    rows.unpersist()
    total = delta_table(spark, config.table).toDF().count()
    return IngestSummary(
        table=config.table, found=len(pairs), inserted=total - before, table_rows=total
    )
