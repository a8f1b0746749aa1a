"""The results table is partitioned by a bucket of the id hash; a chunk's MERGE commits files of
its own buckets only; a table from before buckets keeps working and can be rewritten into them."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from jobs.describe import commit as staging_io
from jobs.tables.delta_io import create_table_if_missing, delta_table, latest_version, read_table
from jobs.tables.layout import (
    BUCKETS_PROPERTY,
    DEFAULT_BUCKETS,
    ChunkPlan,
    relayout_results,
    results_layout,
)
from jobs.tables.results import RESULT_KEYS, RESULTS_SCHEMA_DDL

pytestmark = pytest.mark.spark


def _results(spark, ids, written_at: str, run_id: str = "run-a"):
    """ok result rows (results schema, no bucket) for image ids ``ids``."""
    from pyspark.sql.types import StructType

    schema = StructType.fromDDL(RESULTS_SCHEMA_DDL)
    values = {"prompt_name": "describe", "prompt_version": "v2", "model": "m", "status": "ok",
              "run_id": run_id, "written_at": datetime.fromisoformat(written_at)}
    rows = [tuple(i if f.name == "image_id" else values.get(f.name) for f in schema.fields)
            for i in ids]
    return spark.createDataFrame(rows, schema)


def _merge(spark, table: str, frame, chunk: int, run_id: str = "run-a") -> None:
    """The commit protocol for result rows ``frame`` (all ok): its written_at is the staging's
    own. The commit's one aggregation counts the rows and finds the buckets its MERGE prunes
    to; the buckets are checked against a plain lookup of the staged rows' buckets."""
    staging = staging_io.staging_table_for(table)
    staging_io.stage_chunk(frame.drop("written_at"), staging, run_id, chunk)
    staged = staging_io.read_staged(spark, staging, run_id, chunk)
    counts = staging_io.count_staged(spark, table, staged)
    layout = results_layout(spark, table)
    assert counts.layout == layout
    assert list(counts.buckets) == layout.buckets_in(layout.with_bucket(staged))
    done = staging_io.commit_staged(spark, table, run_id, chunk)
    assert done.tally.statuses == {"ok": frame.count()}
    assert read_table(spark, staging).where(f"run_id = '{run_id}'").count() == 0


def test_staging_adds_its_own_columns_and_refuses_rows_that_carry_them(spark, tmp_path):
    table = str(tmp_path / "results")
    staging = staging_io.ensure_tables(spark, table)
    frame = _results(spark, ["a"], "2026-01-01 00:00:00")
    with pytest.raises(ValueError, match=r"must not carry \['written_at'\]"):
        staging_io.stage_chunk(frame, staging, "run-a", 0)
    staging_io.stage_chunk(frame.drop("written_at"), staging, "run-a", 7)
    staged = read_table(spark, staging).collect()
    assert [(r.image_id, r.chunk) for r in staged] == [("a", 7)]
    assert staged[0].written_at != datetime(2026, 1, 1)


def _committed_buckets(table: str, version: int) -> set[int]:
    """Partition values of every file the commit ``version`` added or removed."""
    log = Path(table) / "_delta_log" / f"{version:020d}.json"
    actions = [json.loads(line) for line in log.read_text().splitlines()]
    return {int(a[k]["partitionValues"]["bucket"]) for a in actions for k in ("add", "remove")
            if k in a}


def test_a_chunk_merge_commits_files_of_its_own_buckets_only(spark, tmp_path):
    from pyspark.sql import functions as F

    table = str(tmp_path / "results")
    staging_io.ensure_tables(spark, table)
    detail = delta_table(spark, table).detail().first()
    assert detail["partitionColumns"] == ["bucket"]
    assert detail["properties"][BUCKETS_PROPERTY] == str(DEFAULT_BUCKETS)

    ids = [f"img-{i}" for i in range(120)]
    plan = ChunkPlan.for_rows(len(ids), 60, DEFAULT_BUCKETS)
    frame = _results(spark, ids, "2026-01-01 00:00:00").withColumn("c", plan.chunk_column())
    for chunk in range(plan.count):
        _merge(spark, table, frame.where(F.col("c") == chunk).drop("c"), chunk)
    rows = read_table(spark, table)
    assert rows.count() == rows.select(*RESULT_KEYS).distinct().count() == 120
    # Every row sits in its bucket, and every chunk's rows in that chunk's buckets.
    check = rows.withColumn("c", plan.chunk_column()).select("c", "bucket").distinct().collect()
    assert all(r.bucket in plan.buckets_of(r.c) for r in check)
    assert {r.bucket for r in check} == {r.b for r in rows.select(
        F.pmod(F.xxhash64("image_id"), F.lit(DEFAULT_BUCKETS)).alias("b")).distinct().collect()}
    # The staging stamped each chunk's rows with one written_at of its own.
    stamps = rows.withColumn("c", plan.chunk_column()).groupBy("c").agg(
        F.countDistinct("written_at").alias("n"), F.min("written_at").alias("at")).collect()
    assert sorted(r.n for r in stamps) == [1] * plan.count
    assert all(r.at != datetime(2026, 1, 1) for r in stamps)  # not the frame's own

    # Chunk 0 described again (newer rows): its MERGE rewrites chunk 0's buckets, nothing else.
    again = _results(spark, ids, "2026-01-02 00:00:00", run_id="run-b").withColumn(
        "c", plan.chunk_column()).where(F.col("c") == 0).drop("c")
    _merge(spark, table, again, 0, run_id="run-b")
    touched = _committed_buckets(table, latest_version(spark, table))
    assert touched and touched <= set(plan.buckets_of(0))
    assert read_table(spark, table).where("run_id = 'run-b'").count() == again.count()


def test_a_table_from_before_buckets_keeps_working_and_can_be_rewritten(spark, tmp_path):
    table = str(tmp_path / "old_results")
    create_table_if_missing(spark, table, RESULTS_SCHEMA_DDL)  # the layout before buckets
    staging_io.ensure_tables(spark, table)  # finds it and leaves it as it is
    _merge(spark, table, _results(spark, ["a", "b", "c"], "2026-01-01 00:00:00"), 0)
    rows = read_table(spark, table)
    assert "bucket" not in rows.columns and rows.count() == 3

    assert relayout_results(spark, table) is True
    detail = delta_table(spark, table).detail().first()
    assert detail["partitionColumns"] == ["bucket"]
    assert detail["properties"][BUCKETS_PROPERTY] == str(DEFAULT_BUCKETS)
    assert relayout_results(spark, table) is False  # once

    _merge(spark, table, _results(spark, ["b", "c", "d"], "2026-01-02 00:00:00", "run-b"), 0,
           run_id="run-b")
    rows = {r.image_id: (r.run_id, r.bucket) for r in read_table(spark, table).collect()}
    assert {i: run for i, (run, _) in rows.items()} == {
        "a": "run-a", "b": "run-b", "c": "run-b", "d": "run-b"}
    expected = spark.createDataFrame([(i,) for i in rows], "image_id STRING").selectExpr(
        "image_id", f"pmod(xxhash64(image_id), {DEFAULT_BUCKETS}) AS b").collect()
    assert {r.image_id: r.b for r in expected} == {i: b for i, (_, b) in rows.items()}


def _column_comments(spark, table: str) -> dict[str, str | None]:
    return {f.name: f.metadata.get("comment") for f in read_table(spark, table).schema.fields}


def test_every_results_column_explains_itself_in_describe_table(spark, tmp_path):
    table = str(tmp_path / "results")
    staging_io.ensure_tables(spark, table)
    described = {r.col_name: r.comment
                 for r in spark.sql(f"DESCRIBE TABLE delta.`{table}`").collect()}
    assert described["image_id"] == (
        "Stable id of the image (from the input table's key column or the path).")
    assert described["latency_ms"].startswith(
        "Milliseconds from submitting the request to the engine until it finished")
    assert described["bucket"].startswith("Hash bucket of image_id")
    comments = _column_comments(spark, table)
    assert len(comments) == 37 and all(comments.values()), comments
    # A second run finds the comments in place and commits nothing.
    version = latest_version(spark, table)
    staging_io.ensure_tables(spark, table)
    assert latest_version(spark, table) == version


def test_a_table_from_before_column_comments_gets_them_and_keeps_its_rows(spark, tmp_path):
    table = str(tmp_path / "results")
    old_ddl = ", ".join(part.split(" COMMENT ")[0] for part in _plain_columns())
    create_table_if_missing(spark, table, old_ddl + ", `bucket` INT", ("bucket",))
    from pyspark.sql import functions as F
    rows = _results(spark, ["a", "b"], "2026-01-01T00:00:00").withColumn("bucket", F.lit(0))
    rows.write.format("delta").mode("append").save(table)
    assert not any(_column_comments(spark, table).values())

    staging_io.ensure_tables(spark, table)
    comments = _column_comments(spark, table)
    assert comments["status"] == (
        "ok, or why the row has no description (decode_error, engine_error, ...).")
    assert all(comments.values()), comments
    assert sorted(r.image_id for r in read_table(spark, table).collect()) == ["a", "b"]


def _plain_columns() -> list[str]:
    """The results columns as ``name TYPE`` (no comments), split from the schema's DDL."""
    from pyspark.sql.types import StructType

    return [f"`{f.name}` {f.dataType.simpleString()}"
            for f in StructType.fromDDL(RESULTS_SCHEMA_DDL).fields]
