"""The describe job over a folder mixing good, bad and duplicate images (real vLLM): rows in ==
rows out, each bad file has its status code, identical bytes are described once."""

import shutil

import pytest
from PIL import Image

from jobs.config import IngestConfig
from jobs.describe.run import run_describe
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from tests.conftest import ONE_ENGINE, describe_config

pytestmark = [pytest.mark.spark, pytest.mark.engine]

BAD_FILES = {
    "empty.jpg": "empty_file",
    "html.jpg": "not_an_image",
    "truncated.jpg": "truncated",
    "bomb.png": "decompression_bomb",
    "sliver.png": "extreme_aspect_ratio",
    "folder.jpg": "is_directory",
}


def _mixed_folder(root, sample_images):
    folder = root / "mixed dir #1"
    folder.mkdir()
    for path in sample_images.paths[:4]:
        shutil.copy(path, folder / path.name)
    shutil.copy(sample_images.paths[0], folder / "copy of scene 0.jpg")  # same bytes, new name
    shutil.copy(sample_images.paths[0], folder / "another copy ü.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "html.jpg").write_text("<html><body>404 not found</body></html>")
    jpeg = folder / "full.jpg"
    Image.new("RGB", (200, 150), (200, 80, 20)).save(jpeg, quality=90)
    (folder / "truncated.jpg").write_bytes(jpeg.read_bytes()[:700])
    jpeg.unlink()
    Image.new("1", (30000, 30000)).save(folder / "bomb.png")  # 900 M pixels declared
    Image.new("RGB", (4000, 10), (0, 0, 0)).save(folder / "sliver.png")
    (folder / "folder.jpg").mkdir()
    return folder


def test_mixed_folder_rows_in_equal_rows_out(spark, sample_images, tiny_model_dir, tmp_path):
    folder = _mixed_folder(tmp_path, sample_images)
    config = describe_config(tmp_path, tiny_model_dir, mlflow__enabled=False, batch_size=8,
                             **ONE_ENGINE)
    ingest = IngestConfig(source=str(folder), table=config.input_table)
    run_ingest(ingest, spark)
    # Manifest-style rows (ingest lists files only) for a file that does not exist and a
    # folder named like an image, beside the folder's files.
    missing = spark.createDataFrame(
        [("missing-1", str(folder / "gone.jpg"), "manifest", None, None),
         ("folder-1", str(folder / "folder.jpg"), "manifest", None, None)],
        "image_id STRING, path STRING, source STRING, ingested_at TIMESTAMP, content_sha256 STRING",
    )
    missing.write.format("delta").mode("append").save(config.input_table)
    inputs = read_table(spark, config.input_table).collect()

    summary = run_describe(config, spark)
    results = {r.path: r for r in read_table(spark, config.results_table).collect()}
    missing = sorted({r.path for r in inputs} - set(results))
    assert len(results) == len(inputs) == 13, (missing, summary)  # rows in == rows out
    for name, code in BAD_FILES.items():
        row = results[str(folder / name)]
        assert row.status == code, (name, row.status, row.status_message)
        assert name in row.status_message
    assert results[str(folder / "gone.jpg")].status == "missing_file"
    good = [r for r in results.values() if r.status == "ok"]
    assert len(good) == 6
    # Identical bytes: described once (by the smallest image_id), the copies reuse it.
    names = [sample_images.paths[0].name, "copy of scene 0.jpg", "another copy ü.jpg"]
    same = [results[str(folder / name)] for name in names]
    described = [r for r in same if r.reused_from is None]
    assert len(described) == 1
    original = described[0]
    assert original.image_id == min(r.image_id for r in same)
    for copy in same:
        if copy is not original:
            assert copy.reused_from == original.image_id
            assert copy.description == original.description
            assert copy.content_sha256 == original.content_sha256
    assert summary.rows_reused == 2 and summary.rows_processed == 11

    # Across runs: a third copy ingested later is not described again.
    shutil.copy(sample_images.paths[0], folder / "late copy.jpg")
    run_ingest(ingest, spark)
    again = run_describe(config, spark)
    assert again.rows_processed == 0 and again.rows_reused == 1
    late = [r for r in read_table(spark, config.results_table).collect() if r.path.endswith("late copy.jpg")]
    assert len(late) == 1 and late[0].description == original.description
