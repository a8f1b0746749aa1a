"""The scale benchmark's logic on a small table (not a timed test): every phase runs and its
figures say what the 1 M-row run must show (write-back of every row once, nothing on a rerun,
status and dedup planning counting the right rows)."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_scale import Params, run_benchmark
from benchmarks.scale_report import markdown

pytestmark = pytest.mark.spark


def test_the_scale_benchmark_on_300_rows(spark, tmp_path):
    params = Params(rows=300, ingest_rows=(300, 450), thumbnails=12, chunk_size=150,
                    batch_size=64, workdir=tmp_path)
    result = run_benchmark(spark, params)
    json.dumps(result)  # the results file must be writable as JSON

    assert {size: figures["rows"] for size, figures in result["ingest"].items()} == {
        "300": 300, "450": 450}
    assert all(f["driver_python_peak_mib"] > 0 and f["driver_jvm_peak_mib"] > 0
               for f in result["ingest"].values())
    describe = result["describe"]
    assert (describe["rows_processed"], describe["chunks"]) == (300, 2)
    assert describe["statuses"] == {"ok": 300}
    assert [row["chunk"] for row in describe["chunk_steps"]] == [0, 1]
    assert all(row["stage_s"] > 0 and row["merge_s"] > 0 and row["write_back_s"] > 0
               for row in describe["chunk_steps"])
    assert len(describe["results_merge_ms"]) == 2
    assert (describe["write_back_commits"], describe["write_back_rows_updated"]) == (2, 300)

    rerun = result["rerun"]
    assert (rerun["rows_processed"], rerun["chunks"], rerun["write_back_commits"]) == (0, 0, 0)
    assert rerun["input_version_after"] == rerun["input_version_before"]
    assert (result["status"]["input_rows"], result["status"]["ok"],
            result["status"]["pending"]) == (300, 300, 0)
    assert (result["dedup_planning"]["representatives"],
            result["dedup_planning"]["duplicates"]) == (12, 288)

    text = markdown(result)
    assert "| 300 |" in text and "| 450 |" in text
    assert "updated **300** input rows in 2 commits" in text
    assert "updated **0** input rows" in text
