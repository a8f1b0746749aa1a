"""Spark-side contracts with a fake engine: one engine per Python worker, rows in == rows out,
bad rows as statuses."""

import pytest

from jobs.config import IngestConfig
from jobs.describe.run import run_describe
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from tests.conftest import describe_config
from tests.fakes import make_fake_engine

pytestmark = pytest.mark.spark


def test_one_engine_per_worker_across_partitions_and_chunks(spark, sample_images, tmp_path):
    (sample_images.folder.parent / "bad").mkdir(exist_ok=True)
    config = describe_config(
        tmp_path, "fake-model", partitions=4, batch_size=2, chunk_size=3, mlflow__enabled=False,
    )
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    summary = run_describe(config, spark, make_engine=make_fake_engine)
    rows = read_table(spark, config.results_table).collect()
    assert len(rows) == 8 and summary.tally.statuses == {"ok": 8}
    assert summary.chunks == 3
    instances = {r.description.split(" by ")[1] for r in rows}
    pids = {i.split(":")[0] for i in instances}
    # local[2]: at most two Python workers, each with exactly one engine, reused across the
    # 4 partitions x 3 chunks (3 Spark actions).
    assert len(instances) == len(pids) <= 2
