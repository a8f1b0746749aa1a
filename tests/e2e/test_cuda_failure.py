"""A CUDA error fails the Spark task instead of its rows: Spark retries the task in a fresh
Python worker, and after ``spark.task.maxFailures`` attempts the job stops with one line on the
console (the CLI in a subprocess, real Spark and Delta, a fake engine raising torch's error)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.config import DescribeConfig, IngestConfig, load_config
from jobs.demo.run import make_sample_images
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from tests.resilience_fakes import engine_model, run_candid, write_job_config

pytestmark = [pytest.mark.e2e, pytest.mark.spark]


def test_a_cuda_error_fails_the_task_spark_retries_it_then_stops_with_one_line(spark, tmp_path):
    make_sample_images(tmp_path / "img", count=6, seed=31)
    builds = tmp_path / "builds"
    config_file = write_job_config(
        tmp_path, engine_factory="tests.resilience_fakes:make_cuda_broken_engine",
        engine__model=engine_model(builds=builds), partitions=1, batch_size=3,
        # local[2, 2]: two task slots, and each task tried at most twice.
        spark__master="local[2,2]",
    )
    config = load_config(DescribeConfig, config_file)
    run_ingest(IngestConfig(source=str(tmp_path / "img"), table=config.input_table), spark)

    done = run_candid(["describe", "--config", str(config_file)])

    assert done.returncode == 1, done.stderr[-3000:]
    # Two attempts of the one task, each in its own Python worker (the first one exited).
    attempts = sorted(path.name for path in builds.iterdir())
    assert len(attempts) == 2, attempts
    assert len({name.split("-")[0] for name in attempts}) == 2, attempts
    errors = [line for line in done.stderr.splitlines() if "candid describe failed" in line]
    assert len(errors) == 1, done.stderr[-3000:]
    (line,) = errors
    assert "AcceleratorError: CUDA error: an illegal memory access was encountered on host" in line
    assert "Spark retries it on another executor" in line
    assert "(Spark retried the task up to spark.task.maxFailures times, then stopped the job)" in line
    # No row was written as a per-row failure: the task failed as a whole.
    results = Path(config.results_table)
    assert not (results / "_delta_log").exists() or read_table(spark, str(results)).count() == 0
