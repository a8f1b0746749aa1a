"""Ingest into a real Delta table: stable ids, idempotent re-ingest, manifests read by Spark
(.txt, .csv, .jsonl, Parquet, Delta) with the same ids the folder listing gives."""

import json

import pytest

from jobs.config import IngestConfig
from jobs.tables.delta_io import delta_table, read_table
from jobs.tables.ingest import image_id_for, list_images, run_ingest, source_rows

pytestmark = pytest.mark.spark

# Paths that a naive derivation would get wrong: spaces, '#', quotes, non-ASCII, a URL.
PATHS = ["/data/a b#1.jpg", "/data/caf\u00e9/\u732b.png", "s3://bucket/x'y\".webp", "/d/plain.jpg"]


def _rows(spark, config: IngestConfig) -> list[tuple[str, str]]:
    with source_rows(spark, config) as rows:
        return sorted((r.image_id, r.path) for r in rows.collect())


def test_folder_ingest_is_idempotent_and_ids_are_stable(spark, sample_images, tmp_path):
    config = IngestConfig(source=str(sample_images.folder), table=str(tmp_path / "images"))
    first = run_ingest(config, spark)
    assert (first.found, first.inserted, first.table_rows) == (8, 8, 8)
    again = run_ingest(config, spark)
    assert (again.inserted, again.table_rows) == (0, 8)
    rows = read_table(spark, config.table).collect()
    assert {r.image_id for r in rows} == {image_id_for(str(p.resolve())) for p in sample_images.paths}
    assert all(r.ingested_at is not None and r.source == str(sample_images.folder) for r in rows)
    # Created with deletion vectors: the per-chunk write-back then rewrites only its rows.
    properties = delta_table(spark, config.table).detail().first()["properties"]
    assert properties["delta.enableDeletionVectors"] == "true"


def test_manifest_jsonl_keeps_given_ids_and_rejects_conflicts(spark, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"image_id": "sku-1", "path": "/data/a b#1.jpg"}) + "\n\n"
        + json.dumps({"path": "s3://bucket/x.png"}) + "\n"
        + json.dumps({"image_id": 42, "path": "/n.jpg"}) + "\n"  # a numeric id stays its text
    )
    config = IngestConfig(source=str(manifest), table=str(tmp_path / "t"))
    assert _rows(spark, config) == sorted([
        ("sku-1", "/data/a b#1.jpg"), (image_id_for("s3://bucket/x.png"), "s3://bucket/x.png"),
        ("42", "/n.jpg"),
    ])
    manifest.write_text(
        json.dumps({"image_id": "dup", "path": "/a.jpg"}) + "\n"
        + json.dumps({"image_id": "dup", "path": "/b.jpg"}) + "\n"
    )
    with pytest.raises(ValueError, match="image_id 'dup' is given to two paths: '/a.jpg' and '/b.jpg'"):
        _rows(spark, config)
    manifest.write_text(json.dumps({"image_id": "x"}) + "\n{not json\n")
    with pytest.raises(ValueError, match="a record has no path"):
        _rows(spark, config)


def test_every_manifest_format_gives_the_python_ids(spark, tmp_path):
    """The same paths through .txt, .csv, .jsonl, Parquet and Delta manifests: ids derived in
    Spark SQL equal ``image_id_for``; a path listed twice is one row."""
    expected = sorted((image_id_for(p), p) for p in PATHS)
    txt = tmp_path / "m.txt"
    txt.write_text("# a comment\n\n" + "\n".join(f"  {p}\t" for p in PATHS) + f"\n{PATHS[0]}\n")
    csv = tmp_path / "m.csv"
    quoted = [p.replace('"', '""') for p in PATHS]
    csv.write_text("path,image_id\n" + "".join(f'"{p}",\n' for p in quoted))
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text("".join(json.dumps({"uri": p}) + "\n" for p in PATHS))
    frame = spark.createDataFrame([(p, "x") for p in PATHS], "uri STRING, other STRING")
    frame.write.parquet(str(tmp_path / "m.parquet"))
    frame.write.format("delta").save(str(tmp_path / "delta_manifest"))
    sources = [
        (txt, {}), (csv, {}), (jsonl, {"path_column": "uri"}),
        (tmp_path / "m.parquet", {"path_column": "uri"}),
        (tmp_path / "delta_manifest", {"path_column": "uri"}),
    ]
    for source, extra in sources:
        config = IngestConfig(source=str(source), table=str(tmp_path / "t"), **extra)
        assert _rows(spark, config) == expected, source


def test_a_manifest_is_ingested_without_hashing_and_reingest_adds_nothing(spark, tmp_path):
    manifest = tmp_path / "paths.txt"
    manifest.write_text("\n".join(f"/nowhere/img_{i}.jpg" for i in range(50)) + "\n")
    config = IngestConfig(source=str(manifest), table=str(tmp_path / "t"), hash_content=False)
    first = run_ingest(config, spark)
    assert (first.found, first.inserted, first.table_rows) == (50, 50, 50)
    manifest.write_text("\n".join(f"/nowhere/img_{i}.jpg" for i in range(60)) + "\n")
    second = run_ingest(config, spark)
    assert (second.found, second.inserted, second.table_rows) == (60, 10, 60)
    rows = read_table(spark, config.table).collect()
    assert {r.image_id for r in rows} == {image_id_for(f"/nowhere/img_{i}.jpg") for i in range(60)}
    assert {r.content_sha256 for r in rows} == {None} and {r.source for r in rows} == {str(manifest)}


def test_a_manifest_without_the_path_column_names_it(spark, tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("file,image_id\n/a.jpg,1\n")
    with pytest.raises(ValueError, match=r"no column 'path' \(path_column\); it has file, image_id"):
        _rows(spark, IngestConfig(source=str(csv), table=str(tmp_path / "t")))


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a folder nor a manifest"):
        list_images(IngestConfig(source=str(tmp_path / "nope"), table=str(tmp_path / "t")))
