"""``batch_size`` is per query: two describe queries running at once from two driver threads of
one SparkSession each hand their UDF frames of their own size, whatever the session's
``spark.sql.execution.arrow.maxRecordsPerBatch`` says, and neither touches that conf.

Spark reads that conf on the driver in ``MapInBatchExec.doExecute``, from the session's one
``SQLConf``: a set-then-restore around each query would race between the threads. The frames are
cut in the UDF adapter instead (``udfs.runner.spark_udf``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from tests.fakes import make_fake_engine
from udfs.prompts import find_prompt
from udfs.runner.describe import DescribeTask
from udfs.runner.spark_udf import make_partition_fn
from udfs.settings import EngineSettings

pytestmark = pytest.mark.spark
PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "prompts"
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
ROWS = 23


def _frame_sizes(batches: Iterator[pd.DataFrame], describe) -> Iterator[pd.DataFrame]:
    """The size of each result frame the describe function yields (one per frame it got)."""
    from pyspark import TaskContext

    partition = TaskContext.get().partitionId()
    for index, result in enumerate(describe(batches)):
        assert (result["status"] == "ok").all(), result["status_message"].tolist()
        yield pd.DataFrame({"part": [partition], "seq": [index], "rows": [len(result)]})


def _describe_frames(spark, rows, batch_size: int, start, out: dict) -> None:
    try:
        out[batch_size] = _run_query(spark, rows, batch_size, start)
    except BaseException as err:  # noqa: BLE001 - reported by the test's thread
        out[batch_size] = err


def _run_query(spark, rows, batch_size: int, start) -> list:
    prompt = find_prompt(PROMPTS, "v2")
    task = DescribeTask(engine=EngineSettings(model=f"fake-frames-{batch_size}"), prompt=prompt,
                        sampling=prompt.sampling, batch_size=batch_size,
                        make_engine=make_fake_engine)
    sized = rows.repartition(2, "image_id").mapInPandas(
        partial(_frame_sizes, describe=make_partition_fn(task)), "part INT, seq INT, rows INT"
    )
    start.wait()
    return sized.collect()


def test_two_concurrent_queries_get_frames_of_their_own_batch_size(spark, sample_images):
    paths = [str(p) for p in sample_images.paths]
    rows = spark.createDataFrame(
        [(f"id-{i}", paths[i % len(paths)], 1) for i in range(ROWS)],
        "image_id STRING, path STRING, attempts INT",
    )
    before = spark.conf.get(ARROW_BATCH)
    spark.conf.set(ARROW_BATCH, "2")  # smaller than both: the adapter joins Arrow batches
    try:
        out: dict[int, list] = {}
        start = threading.Barrier(2)
        threads = [threading.Thread(target=_describe_frames, args=(spark, rows, size, start, out))
                   for size in (3, 5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert spark.conf.get(ARROW_BATCH) == "2"  # neither query touched the session
    finally:
        spark.conf.set(ARROW_BATCH, before)
    assert sorted(out) == [3, 5]
    for size, found in out.items():
        assert not isinstance(found, BaseException), found
        per_part: dict[int, list[int]] = {}
        for row in sorted(found, key=lambda r: (r["part"], r["seq"])):
            per_part.setdefault(row["part"], []).append(row["rows"])
        assert sum(map(sum, per_part.values())) == ROWS
        for sizes in per_part.values():
            # Every frame has batch_size rows but a partition's last one.
            assert all(s == size for s in sizes[:-1]) and 1 <= sizes[-1] <= size, (size, sizes)
        assert max(max(s) for s in per_part.values()) == size
