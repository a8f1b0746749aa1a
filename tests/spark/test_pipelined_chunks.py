"""Pipelined chunks on real Spark and Delta: chunk k + 1's engine stage starts before chunk k's
MERGE, chunk k + 2's only after chunk k has committed, and the results are the same rows,
exactly once, as with pipelining off (fake engine: the subject is the driver's scheduling)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from jobs.config import IngestConfig
from jobs.describe.run import run_describe
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from jobs.tables.results import RESULT_KEYS
from tests.conftest import describe_config
from tests.fakes import make_fake_engine

pytestmark = pytest.mark.spark


def _events(caplog) -> list[str]:
    """The run's own markers, in the order the driver logged them."""
    wanted = ("engine stage started", "staged", "merged")
    return [
        r.getMessage() for r in caplog.records
        if r.name in ("candid.pipeline", "candid.staging")
        and any(w in r.getMessage() for w in wanted)
    ]


def _manifest(sample_images, folder: Path) -> Path:
    """The sample images under fixed ids. Ids derived from paths change with pytest's temporary
    folder, and with them the chunk each image hashes to: a chunk then came out empty in about
    one run in nine (8 rows, 3 chunks: 3 x (2/3)^8), and an empty chunk merges nothing, so
    there was no MERGE to order the next chunk's start against. These ids put 3, 3 and 2
    images in chunks 0, 1 and 2."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "images.jsonl"
    manifest.write_text("".join(
        json.dumps({"image_id": f"image-{i}", "path": str(path)}) + "\n"
        for i, path in enumerate(sample_images.paths)
    ), encoding="utf-8")
    return manifest


def _describe(spark, sample_images, tmp_path, caplog, **overrides):
    config = describe_config(tmp_path, "fake", chunk_size=3, partitions=3, batch_size=2,
                             source_column__enabled=True, source_column__every_chunk="always",
                             mlflow__enabled=False, **overrides)
    manifest = _manifest(sample_images, tmp_path)
    run_ingest(IngestConfig(source=str(manifest), table=config.input_table), spark)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="candid"):
        summary = run_describe(config, spark, make_engine=make_fake_engine)
    return config, summary, _events(caplog)


def _position(events: list[str], chunk: int, what: str) -> int:
    return next(i for i, e in enumerate(events) if e.startswith(f"chunk {chunk}: {what}"))


def test_next_chunk_engine_stage_overlaps_the_commit_and_results_stay_exactly_once(
    spark, sample_images, tmp_path, caplog
):
    on, summary_on, events = _describe(spark, sample_images, tmp_path / "on", caplog)
    assert summary_on.chunks == 3 and summary_on.rows_processed == 8
    merged = sorted(int(e.split(":")[0].split()[1]) for e in events if "merged" in e)
    assert merged == [0, 1, 2], events  # every chunk holds rows (the fixed ids)
    for k in range(summary_on.chunks - 1):
        # k + 1 was already running when k merged ...
        assert _position(events, k + 1, "engine stage started") < _position(events, k, "merged")
    # ... and k + 2 waited for k's commit: at most one chunk staged beside the one committing.
    assert _position(events, 0, "merged") < _position(events, 2, "engine stage started")

    off, summary_off, events_off = _describe(
        spark, sample_images, tmp_path / "off", caplog, pipeline_chunks=False
    )
    for k in range(summary_off.chunks - 1):
        assert _position(events_off, k, "merged") < _position(events_off, k + 1,
                                                               "engine stage started")
    rows = {}
    for config in (on, off):
        results = read_table(spark, config.results_table)
        assert results.count() == results.select(*RESULT_KEYS).distinct().count() == 8
        rows[config.results_table] = {(r.image_id, r.status) for r in results.collect()}
        written = read_table(spark, config.input_table).where("description_v2 IS NOT NULL")
        assert written.count() == 8  # every chunk written back
    assert rows[on.results_table] == rows[off.results_table]
    assert summary_on.tally.statuses == summary_off.tally.statuses == {"ok": 8}
