"""``candid eval make-dataset``: synthetic scenes with known truth, as a Candid input table.

Scenes come from ``udfs.evaluation.scenes.render_scene(seed, index)`` for ``index`` in ``0..n-1``.
Each JPEG is written to the images folder (default: ``<table>_images`` beside the table, so a
cluster reads it wherever it reads the table) and each row is a valid input row of the
describe job (``jobs.tables.ingest.INPUT_SCHEMA_DDL``) plus the truth:

- ``truth_json``: the scene's whole truth (``udfs.evaluation.scenes`` documents the keys), JSON with
  sorted keys. It is what ``candid eval score`` and ``candid audit`` read: one source, which a
  new truth key cannot get out of step with.
- ``scene_seed``, ``scene_index``, ``subject``, ``count_of``, ``true_count``,
  ``has_distractor``: typed copies of a few keys, for SQL and for eyes.

``image_id`` is the scene id (``scene-<seed>-<index>``): the same scene has the same id
wherever its files lie, so results join to the truth of any copy. Everything but
``ingested_at`` is a function of ``(seed, n)``.

Scenes are rendered on the driver: about 2 ms and 2 KB each, so 10 000 take ~20 s and 20 MB.
Rendering on the executors would only pay off for far larger sets, and a grounding eval needs
hundreds to a few thousand images: at 500 images a 95% interval of a rate is about ±4 points.
The files are written by a small thread pool (object stores take one request per file).
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from jobs.config import ConfigError
from jobs.tables.delta_io import is_path, read_table, table_exists
from jobs.tables.ingest import INPUT_SCHEMA_DDL
from udfs.evaluation.scenes import Scene, render_scene
from udfs.images.sources import local_path

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

TRUTH_COLUMN = "truth_json"
DATASET_SCHEMA_DDL = (
    f"{INPUT_SCHEMA_DDL}, scene_seed INT, scene_index INT, subject STRING, count_of STRING, "
    f"true_count INT, has_distractor BOOLEAN, {TRUTH_COLUMN} STRING"
)
DATASET_COLUMNS = tuple(part.split()[0] for part in DATASET_SCHEMA_DDL.split(", "))
IMAGES_SUFFIX = "_images"
# Files written at once: object stores answer one request per file.
WRITE_THREADS = 8
# More scenes than this would be better rendered on the executors (see the module docstring).
MAX_SCENES = 100_000


@dataclass(frozen=True)
class DatasetSummary:
    """What ``make_dataset`` wrote."""

    table: str
    images: str
    rows: int
    seed: int
    subjects: dict[str, int] = field(default_factory=dict)
    with_distractor: int = 0


def default_images_dir(table: str) -> str:
    """``<table>_images`` for a table named by a path or URL.

    Raises:
        ConfigError: the table is a metastore name: there is no folder beside it.
    """
    if not is_path(table):
        raise ConfigError(f"--images is needed: {table!r} is a metastore name, not a path")
    return table.rstrip("/") + IMAGES_SUFFIX


def check_scene_count(n: int) -> None:
    """Raise ConfigError unless ``1 <= n <= MAX_SCENES``."""
    if not 1 <= n <= MAX_SCENES:
        raise ConfigError(f"--n must be within 1..{MAX_SCENES}, got {n}")


def image_path(images_dir: str, scene: Scene) -> str:
    """Where the scene's JPEG goes: an absolute local path, or a URL under ``images_dir``."""
    name = f"{scene.scene_id}.jpg"
    local = local_path(images_dir)
    return str(local.resolve() / name) if local is not None else f"{images_dir.rstrip('/')}/{name}"


def _write(target: str, data: bytes) -> None:
    local = local_path(target)
    if local is not None:
        local.write_bytes(data)
        return
    import fsspec

    with fsspec.open(target, "wb") as handle:
        handle.write(data)


def _make_folder(images_dir: str) -> None:
    local = local_path(images_dir)
    if local is not None:
        local.mkdir(parents=True, exist_ok=True)
    else:
        import fsspec

        fs, root = fsspec.core.url_to_fs(images_dir)
        fs.makedirs(root, exist_ok=True)


def dataset_row(scene: Scene, path: str, ingested_at: datetime) -> dict[str, Any]:
    """The table row of one scene (``DATASET_SCHEMA_DDL``)."""
    import hashlib

    truth = scene.truth
    return {
        "image_id": scene.scene_id, "path": path, "source": f"candid-scenes seed={scene.seed}",
        "ingested_at": ingested_at, "content_sha256": hashlib.sha256(scene.image).hexdigest(),
        "scene_seed": scene.seed, "scene_index": scene.index, "subject": truth["subject"],
        "count_of": truth["count_of"], "true_count": int(truth["count"]),
        "has_distractor": truth["distractor"] is not None,
        TRUTH_COLUMN: json.dumps(truth, sort_keys=True),
    }


def render_and_write(n: int, seed: int, images_dir: str) -> list[dict[str, Any]]:
    """Render scenes ``0..n-1`` of ``seed``, write their files, return their rows."""
    _make_folder(images_dir)
    scenes = [render_scene(seed, index) for index in range(n)]
    paths = [image_path(images_dir, scene) for scene in scenes]
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        list(pool.map(_write, paths, [s.image for s in scenes]))
    now = datetime.now(timezone.utc)
    return [dataset_row(scene, path, now) for scene, path in zip(scenes, paths, strict=True)]


def _refuse_foreign_table(spark: SparkSession, table: str) -> None:
    """An existing table is replaced only when it is an eval dataset itself: a typo in --out
    must not overwrite someone's input table."""
    if table_exists(spark, table) and TRUTH_COLUMN not in read_table(spark, table).columns:
        raise ConfigError(f"{table} exists and is not an eval dataset (no {TRUTH_COLUMN} "
                          "column); refusing to overwrite it")


def make_dataset(spark: SparkSession, n: int, table: str, seed: int = 0,
                 images_dir: str | None = None) -> DatasetSummary:
    """Write ``n`` scenes of ``seed``: the JPEGs to ``images_dir`` and the rows to ``table``
    (replacing an earlier eval dataset there).

    Raises:
        ConfigError: ``n`` out of range, no folder for a metastore table, or ``table`` is an
            existing table that is not an eval dataset.
    """
    check_scene_count(n)
    folder = images_dir or default_images_dir(table)
    _refuse_foreign_table(spark, table)
    rows = render_and_write(n, seed, folder)
    frame = spark.createDataFrame([tuple(r[c] for c in DATASET_COLUMNS) for r in rows],
                                  DATASET_SCHEMA_DDL)
    writer = frame.coalesce(1).write.format("delta").mode("overwrite")
    writer = writer.option("overwriteSchema", "true")
    writer.save(table) if is_path(table) else writer.saveAsTable(table)
    subjects = Counter(r["subject"] for r in rows)
    local = local_path(folder)
    return DatasetSummary(
        table=table, images=str(local.resolve()) if local is not None else folder,
        rows=len(rows), seed=seed, subjects=dict(sorted(subjects.items())),
        with_distractor=sum(r["has_distractor"] for r in rows),
    )
