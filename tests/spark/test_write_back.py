"""Write-back onto the input table touches only what changed: each chunk's rows right after
the chunk commits, nothing at all on a rerun with nothing new (the input table's Delta version
stays), one row when one value was changed by someone else; and an owner appending to the
table while Candid writes back does not fail the run."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from jobs.config import IngestConfig
from jobs.describe import write_back
from jobs.describe.run import run_describe
from jobs.tables.delta_io import delta_table, latest_version, read_table
from jobs.tables.ingest import run_ingest
from jobs.tables.layout import DEFAULT_BUCKETS, ChunkPlan
from tests.conftest import describe_config
from tests.fakes import make_fake_engine
from tests.resilience_fakes import held_until

pytestmark = pytest.mark.spark


def _write_back_merges(spark, table: str, after: int) -> list[int]:
    """Rows updated by each MERGE committed to ``table`` after version ``after``, oldest first."""
    history = delta_table(spark, table).history().where(
        f"version > {after} AND operation = 'MERGE'").orderBy("version").collect()
    return [int(h["operationMetrics"]["numTargetRowsUpdated"]) for h in history]


def _nonempty_chunks(spark, table: str, rows: int, chunk_size: int) -> int:
    plan = ChunkPlan.for_rows(rows, chunk_size, DEFAULT_BUCKETS)
    return read_table(spark, table).select(plan.chunk_column().alias("c")).distinct().count()


def test_each_chunk_is_written_back_once_and_a_rerun_commits_nothing(
    spark, sample_images, tmp_path
):
    config = describe_config(tmp_path, "fake", source_column__enabled=True, chunk_size=3,
                             mlflow__enabled=False)
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    before = latest_version(spark, config.input_table)
    first = run_describe(config, spark, make_engine=make_fake_engine)
    assert first.chunks == 3 and first.rows_processed == 8
    merges = _write_back_merges(spark, config.input_table, before)
    # One MERGE per chunk with rows (the table has deletion vectors); the end-of-run pass found
    # nothing left to change and committed nothing.
    assert len(merges) == _nonempty_chunks(spark, config.input_table, 8, 3) >= 2
    assert sum(merges) == 8
    results = {r.image_id: r.description for r in read_table(spark, config.results_table).collect()}
    written = {r.image_id: r.description_v2 for r in read_table(spark, config.input_table).collect()}
    assert written == results

    version = latest_version(spark, config.input_table)
    again = run_describe(config, spark, make_engine=make_fake_engine)
    assert again.rows_processed == 0
    assert latest_version(spark, config.input_table) == version  # no-op: nothing committed

    edited = sorted(results)[0]
    delta_table(spark, config.input_table).update(
        f"image_id = '{edited}'", {"description_v2": "'edited by hand'"})
    version = latest_version(spark, config.input_table)
    run_describe(config, spark, make_engine=make_fake_engine)
    assert _write_back_merges(spark, config.input_table, version) == [1]
    restored = read_table(spark, config.input_table).where(f"image_id = '{edited}'").first()
    assert restored.description_v2 == results[edited]


def test_without_deletion_vectors_the_write_back_runs_once_at_the_end(
    spark, sample_images, tmp_path
):
    table = str(tmp_path / "theirs")
    paths = [str(p.resolve()) for p in sample_images.paths]
    spark.createDataFrame([(f"id-{i}", p) for i, p in enumerate(paths)], "image_id STRING, path STRING") \
        .write.format("delta").save(table)
    config = describe_config(tmp_path, "fake", input_table=table, source_column__enabled=True,
                             chunk_size=3, mlflow__enabled=False)
    summary = run_describe(config, spark, make_engine=make_fake_engine)
    assert summary.chunks == 3
    assert _write_back_merges(spark, table, 0) == [8]


def test_an_owner_appending_during_the_write_back_does_not_fail_the_run(
    spark, sample_images, tmp_path, monkeypatch, caplog
):
    """The write-back's MERGE is held (a slow UDF in its source) until the table's owner has
    appended rows: Delta rejects the MERGE's commit (ConcurrentAppendException), Candid retries
    it, and both the descriptions and the owner's rows are in the table."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    config = describe_config(tmp_path, "fake", source_column__enabled=True,
                             source_column__every_chunk="always", mlflow__enabled=False)
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    started, appended = tmp_path / "write-back-started", tmp_path / "appended"

    slow = F.udf(held_until(started, appended), StringType())
    current_ok = write_back._current_ok
    monkeypatch.setattr(write_back, "_current_ok", lambda session, run: current_ok(
        session, run).coalesce(1).withColumn("description", slow("description")))

    def owner_appends() -> None:
        deadline = time.monotonic() + 300
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        other = spark.newSession()  # the owner's own session
        rows = [(f"new-{i}", f"/incoming/{i}.jpg", "owner", datetime(2026, 1, 1), None)
                for i in range(2)]
        other.createDataFrame(rows, read_table(other, config.input_table).schema) \
            .write.format("delta").mode("append").save(config.input_table)
        appended.touch()

    owner = threading.Thread(target=owner_appends)
    owner.start()
    with caplog.at_level("WARNING", logger="candid.delta"):
        summary = run_describe(config, spark, make_engine=make_fake_engine)
    owner.join()
    assert summary.rows_processed == 8
    assert "write description_v2 into" in caplog.text
    assert "concurrent write conflict, retry 1" in caplog.text
    rows = {r.image_id: r.description_v2 for r in read_table(spark, config.input_table).collect()}
    assert {i for i, d in rows.items() if d is not None} == {
        r.image_id for r in read_table(spark, config.results_table).collect()}
    assert rows["new-0"] is None and rows["new-1"] is None and len(rows) == 10
