"""Ingest into a real Delta table: stable ids, idempotent re-ingest, manifests."""

import json

import pytest

from jobs.config import IngestConfig
from jobs.delta_io import read_table
from jobs.ingest import image_id_for, list_images, run_ingest

pytestmark = pytest.mark.spark


def test_folder_ingest_is_idempotent_and_ids_are_stable(spark, sample_images, tmp_path):
    config = IngestConfig(source=str(sample_images.folder), table=str(tmp_path / "images"))
    first = run_ingest(config, spark)
    assert (first.found, first.inserted, first.table_rows) == (8, 8, 8)
    again = run_ingest(config, spark)
    assert (again.inserted, again.table_rows) == (0, 8)
    rows = read_table(spark, config.table).collect()
    assert {r.image_id for r in rows} == {image_id_for(str(p.resolve())) for p in sample_images.paths}
    assert all(r.ingested_at is not None and r.source == str(sample_images.folder) for r in rows)


def test_manifest_jsonl_keeps_given_ids_and_rejects_conflicts(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"image_id": "sku-1", "path": "/data/a b#1.jpg"}) + "\n"
        + json.dumps({"path": "s3://bucket/x.png"}) + "\n"
    )
    pairs = list_images(IngestConfig(source=str(manifest), table=str(tmp_path / "t")))
    assert pairs == [("sku-1", "/data/a b#1.jpg"), (image_id_for("s3://bucket/x.png"), "s3://bucket/x.png")]
    manifest.write_text(
        json.dumps({"image_id": "dup", "path": "/a.jpg"}) + "\n"
        + json.dumps({"image_id": "dup", "path": "/b.jpg"}) + "\n"
    )
    with pytest.raises(ValueError, match="image_id 'dup' is given to two paths"):
        list_images(IngestConfig(source=str(manifest), table=str(tmp_path / "t")))


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a folder nor a manifest"):
        list_images(IngestConfig(source=str(tmp_path / "nope"), table=str(tmp_path / "t")))
