"""A driver that runs the describe UDF twice (what two chunks of a run do) on a Spark master,
pausing between the two actions longer than Spark keeps idle Python workers (60 s, hard-coded
in Spark's ``PythonWorkerFactory``; ``spark.python.worker.idleTimeoutSeconds`` is another thing:
it only logs a worker stuck inside a task). The fake engine of ``tests.cluster_fakes`` logs
every build, call and task's worker to the file named by ``CANDID_TEST_PINNING_LOG``; the
driver logs the pause.

Run: ``python tests/placement_job.py --master URL --images DIR --pause 80 [--conf k=v ...]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    from pyspark.sql import SparkSession

    from tests.cluster_fakes import make_where_engine, record_event, recording_worker
    from udfs.prompts import find_prompt
    from udfs.runner.describe import DescribeTask, result_schema_ddl
    from udfs.runner.spark_udf import make_partition_fn
    from udfs.settings import EngineSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", required=True)
    parser.add_argument("--images", required=True, type=Path)
    parser.add_argument("--pause", type=float, required=True)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--conf", action="append", default=[])
    args = parser.parse_args(argv)
    builder = SparkSession.builder.master(args.master).appName("candid-placement-idle")
    for item in args.conf:
        key, _, value = item.partition("=")
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    prompt = find_prompt(REPO / "conf" / "prompts", "v2")
    task = DescribeTask(
        engine=EngineSettings(backend="transformers", model="fake-where", model_id="test/where"),
        prompt=prompt, sampling=prompt.sampling, run_id="idle", batch_size=2,
        make_engine=make_where_engine,
    )
    paths = sorted(str(p) for p in args.images.iterdir() if p.is_file())
    rows = spark.createDataFrame([(f"id-{i}", p, 0) for i, p in enumerate(paths)],
                                 "image_id string, path string, attempts int")
    describe = recording_worker(make_partition_fn(task))
    for action in range(2):
        if action:
            record_event("pause")
            time.sleep(args.pause)  # the injected gap between two chunk actions
        out = rows.repartition(args.partitions, "image_id").mapInPandas(
            describe, schema=result_schema_ddl()).collect()
        statuses = sorted({row["status"] for row in out})
        print(f"action {action}: {len(out)} rows, statuses {statuses}", flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
