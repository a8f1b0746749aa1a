"""Tables users already have, on real Spark + Delta with the fake engine (these are about the
plumbing): a results table written by Candid's first release, an input table with column
mapping (a renamed column, names with spaces), and an append-only input table."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from jobs.commandline.console import ConsoleReporter
from jobs.config import IngestConfig
from jobs.describe.run import run_describe
from jobs.describe.status import read_status
from jobs.tables.delta_io import latest_version, read_table
from jobs.tables.ingest import run_ingest
from tests.conftest import PROMPT_DIR, describe_config
from tests.fakes import make_fake_engine
from udfs.prompts import find_prompt

pytestmark = pytest.mark.spark

# The results table as the first release wrote it (commit b8e0ae6: udfs/describe.py's
# RESULT_COLUMNS plus written_at; no bucket partition), written out so that it never follows
# today's schema.
FIRST_RELEASE_RESULTS = (
    "image_id STRING, path STRING, prompt_name STRING, prompt_version STRING, "
    "prompt_hash STRING, model STRING, engine STRING, status STRING, status_message STRING, "
    "description STRING, finish_reason STRING, prompt_tokens INT, completion_tokens INT, "
    "latency_ms DOUBLE, guardrail_flags ARRAY<STRING>, content_sha256 STRING, "
    "file_bytes BIGINT, image_format STRING, orig_width INT, orig_height INT, frames INT, "
    "sharpness DOUBLE, input_width INT, input_height INT, visual_tokens INT, "
    "low_visibility BOOLEAN, attempts INT, run_id STRING, written_at TIMESTAMP"
)
# Its staging table: the same columns plus the chunk, partitioned by (run_id, chunk).
FIRST_RELEASE_STAGING = FIRST_RELEASE_RESULTS + ", chunk INT"
# Columns today's results rows have and the first release's did not.
ADDED_SINCE = {"cached_prompt_tokens", "queue_wait_ms", "mean_logprob", "min_logprob",
               "structured_json", "reused_from", "run_fingerprint"}
MODEL = "test/tiny-qwen2-vl"


def _first_release_tables(spark, config, image_ids: list[str]) -> None:
    """Results (ok rows of v2 for ``image_ids``, by a run "release-1") and an empty staging
    table, both with the first release's schema."""
    prompt_hash = find_prompt(PROMPT_DIR, "v2").content_hash()
    rows = [
        {"image_id": i, "path": f"/old/{i}.png", "prompt_name": "describe",
         "prompt_version": "v2", "prompt_hash": prompt_hash, "model": MODEL, "engine": "vllm",
         "status": "ok", "description": f"old description of {i}", "guardrail_flags": [],
         "attempts": 1, "run_id": "release-1", "written_at": datetime(2026, 11, 27, 22, 0)}
        for i in image_ids
    ]
    spark.createDataFrame(rows, FIRST_RELEASE_RESULTS).write.format("delta").save(
        config.results_table)
    spark.createDataFrame([], FIRST_RELEASE_STAGING).write.format("delta") \
        .partitionBy("run_id", "chunk").save(config.results_table + "_staging")


def test_a_first_release_results_table_is_upgraded_in_place_and_its_rows_count(
    spark, sample_images, tmp_path
):
    config = describe_config(tmp_path, "fake", mlflow__enabled=False)
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    ids = sorted(r.image_id for r in read_table(spark, config.input_table).collect())
    old = ids[:3]
    _first_release_tables(spark, config, old)

    before = read_status(spark, config)  # on the old table, before any upgrade
    assert (before.input_rows, before.ok, before.pending) == (8, 3, 5)
    assert before.fingerprints == {None: 3}

    summary = run_describe(config, spark, make_engine=make_fake_engine)
    assert summary.rows_pending == 5 and summary.rows_processed == 5  # the old rows kept

    results = read_table(spark, config.results_table)
    old_columns = {f.split()[0] for f in FIRST_RELEASE_RESULTS.split(", ")}
    assert set(results.columns) - old_columns == ADDED_SINCE  # added in place
    rows = {r.image_id: r for r in results.collect()}
    assert sorted(rows) == ids and {r.status for r in rows.values()} == {"ok"}
    for image_id in old:
        assert rows[image_id].run_id == "release-1"
        assert rows[image_id].description == f"old description of {image_id}"
        assert rows[image_id].run_fingerprint is None
    assert {rows[i].run_fingerprint for i in ids[3:]} == {summary.fingerprint}
    after = read_status(spark, config)
    assert (after.ok, after.pending, after.failed_final) == (8, 0, {})
    assert after.fingerprints == {None: 3, summary.fingerprint: 5}
    again = run_describe(config, spark, make_engine=make_fake_engine)
    assert (again.rows_pending, again.rows_processed) == (0, 0)


def _owned_table(spark, table: str, paths: list[str], properties: dict[str, str]) -> None:
    """Someone else's input table: their id column and a path column, with table properties."""
    props = ", ".join(f"'{k}' = '{v}'" for k, v in properties.items())
    spark.sql(f"CREATE TABLE delta.`{table}` (sku BIGINT, uri STRING, note STRING) "
              f"USING delta TBLPROPERTIES ({props})")
    spark.createDataFrame([(100 + i, p, f"owner-{i}") for i, p in enumerate(paths)],
                          "sku BIGINT, uri STRING, note STRING") \
        .write.format("delta").mode("append").save(table)


def test_a_column_mapped_input_table_with_a_renamed_column_is_described_and_written_back(
    spark, sample_images, tmp_path
):
    table = str(tmp_path / "catalogue")
    paths = sorted(str(p.resolve()) for p in sample_images.paths)[:4]
    _owned_table(spark, table, paths, {
        "delta.columnMapping.mode": "name", "delta.minReaderVersion": "2",
        "delta.minWriterVersion": "5"})
    # What column mapping is for: a rename (and a name with a space) without rewriting files.
    spark.sql(f"ALTER TABLE delta.`{table}` RENAME COLUMN uri TO `image uri`")
    config = describe_config(
        tmp_path, "fake", input_table=table, mlflow__enabled=False,
        input={"id_column": "sku", "path_column": "image uri"}, source_column__enabled=True,
    )
    summary = run_describe(config, spark, make_engine=make_fake_engine)
    assert (summary.rows_in, summary.rows_processed) == (4, 4)
    results = {r.image_id: r for r in read_table(spark, config.results_table).collect()}
    assert {i: (r.path, r.status) for i, r in results.items()} == {
        str(100 + i): (p, "ok") for i, p in enumerate(paths)}
    after = read_table(spark, table)
    assert after.columns == ["sku", "image uri", "note", "description_v2"]
    assert {r.sku: r.description_v2 for r in after.collect()} == {
        int(i): r.description for i, r in results.items()}
    assert sorted(r.note for r in after.collect()) == [f"owner-{i}" for i in range(4)]


def test_an_append_only_input_table_is_described_and_its_write_back_skipped_with_a_message(
    spark, sample_images, tmp_path
):
    table = str(tmp_path / "append_only")
    paths = sorted(str(p.resolve()) for p in sample_images.paths)[:4]
    _owned_table(spark, table, paths, {"delta.appendOnly": "true"})
    version = latest_version(spark, table)
    config = describe_config(
        tmp_path, "fake", input_table=table, mlflow__enabled=False,
        input={"id_column": "sku", "path_column": "uri"}, source_column__enabled=True,
        source_column__every_chunk="always", chunk_size=2,
    )
    out = io.StringIO()
    summary = run_describe(config, spark, reporter=ConsoleReporter(out), make_engine=make_fake_engine)
    # Nothing lost: every row described and committed to the results table.
    assert summary.tally.statuses == {"ok": 4}
    results = read_table(spark, config.results_table).collect()
    assert sorted(r.image_id for r in results) == ["100", "101", "102", "103"]
    assert all(r.description.startswith("fake ") for r in results)
    # The owner's table is untouched, and the run said why in one line.
    assert latest_version(spark, table) == version
    assert read_table(spark, table).columns == ["sku", "uri", "note"]
    skipped = [line for line in out.getvalue().splitlines() if "not written onto" in line]
    assert skipped == [
        f"[describe] description_v2 not written onto {table}: the table is append-only "
        f"(delta.appendOnly=true); the descriptions are in {config.results_table}. Unset "
        "source_column.enabled to silence this, or lift the property to write back"]
