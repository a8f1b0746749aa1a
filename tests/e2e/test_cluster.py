"""The describe job on a real multi-executor Spark: a standalone master and worker on this
machine (``tests.standalone``), two executors with one (fake) GPU each, found by the project's
discovery script, the job submitted with ``spark-submit $(candid submit-args ...)`` and the
executors running the packed environment (``scripts/pack_env.py``), not this repository.

What it proves:
- each engine was built with ``CUDA_VISIBLE_DEVICES`` equal to the GPU Spark assigned to the
  task, the two executors got different GPUs, and each executor built its engine once;
- the rows equal those of the same job run in-process on ``local[2]``;
- a layout where two tasks share a GPU stops on the driver before any engine is built.

The packed environment holds the wheel and what the executors import (no engine, no MLflow, no
pyspark: about 180 MiB packed, see scripts/pack_env.py); the fake engine travels as a zip of
``tests/`` with ``--py-files``. ``make test`` packs it before pytest starts; here it is packed
only when missing or stale.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.cluster_fakes import PINNING_LOG_ENV, make_where_engine, read_pinning_log
from tests.command_logs import failure_report
from tests.conftest import describe_config
from tests.small_spark import SMALL_DATA_CONFS
from tests.standalone import StandaloneCluster, start_cluster, submit_describe, table_rows

pytestmark = [pytest.mark.e2e, pytest.mark.spark]
REPO = Path(__file__).resolve().parents[2]
ARCHIVE = REPO / "build" / "dist" / "candid-env-executor.tar.gz"
GPU_PROFILE = REPO / "conf" / "spark" / "gpu-cluster.yaml"
# The driver runs this checkout (the venv may have another one installed in editable mode);
# the executors get only the archive and the tests zip.
DRIVER_ENV = {"PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def archive() -> Path:
    subprocess.run(
        [sys.executable, "scripts/pack_env.py", "--name", "executor",
         "--exclude", "pyspark,delta-spark,mlflow"], cwd=REPO, check=True,
    )
    return ARCHIVE


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = start_cluster(tmp_path_factory.mktemp("standalone"), gpus=["0", "1"], cores=2,
                            memory="2g")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def tests_zip(tmp_path_factory) -> Path:
    """The fake engine's modules, for --py-files: the packed environment has only the wheel."""
    path = tmp_path_factory.mktemp("pyfiles") / "candid_tests.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("__init__.py", "fakes.py", "cluster_fakes.py"):
            archive.write(REPO / "tests" / name, f"tests/{name}")
    return path


def _cluster_config(tmp: Path, cluster: StandaloneCluster, archive: Path, pinning_log: Path,
                    input_table: str) -> Path:
    """The GPU profile as shipped, on this small machine: one core and 640 MB per executor."""
    config = describe_config(
        tmp, "fake-where", mlflow__enabled=False, batch_size=2, partitions=4, chunk_size=8,
        input_table=input_table,
    ).model_dump(mode="json")
    config["engine"]["model_id"] = "test/fake-where"
    config["spark"] = {
        "profile": str(GPU_PROFILE), "master": cluster.url, "archive": str(archive),
        "conf": {
            **SMALL_DATA_CONFS,
            "spark.executor.cores": "1", "spark.candid.engine.taskCpus": "1",
            "spark.executor.memory": "640m", "spark.executor.memoryOverhead": "384m",
            "spark.driver.memory": "1g", "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2", "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.databricks.delta.snapshotPartitions": "2",
            # Both executors registered before the first job, so both get describe tasks.
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            f"spark.executorEnv.{PINNING_LOG_ENV}": str(pinning_log),
        },
    }
    path = tmp / "cluster-job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.timeout(900)
def test_pinned_executors_from_the_packed_environment_match_the_local_run(
    spark, sample_images, tmp_path, archive, cluster, tests_zip,
):
    from jobs.config import IngestConfig
    from jobs.describe.run import run_describe
    from jobs.tables.ingest import run_ingest

    # One chunk of four tasks on two one-core executors: each executor runs at least one task
    # (both are registered before the first job), most run two on one engine.
    local = describe_config(tmp_path / "local", "fake-where", mlflow__enabled=False,
                            batch_size=2, partitions=4, chunk_size=8)
    local = local.model_copy(update={"engine": local.engine.model_copy(
        update={"model_id": "test/fake-where"})})
    run_ingest(IngestConfig(source=str(sample_images.folder), table=local.input_table), spark)
    pinning_log = tmp_path / "pinning.jsonl"
    config = _cluster_config(tmp_path, cluster, archive, pinning_log, local.input_table)

    args, done = submit_describe(config, py_files=tests_zip, env=DRIVER_ENV)

    assert done.returncode == 0, failure_report(done.stdout, done.stderr) + cluster.log_tail()
    assert "statuses: ok=8" in done.stdout
    # Executors ran the archive's Python, with the wheel inside it, not this repository.
    assert "spark.pyspark.python=./environment/bin/python" in args
    assert f"{archive}#environment" in args
    records = read_pinning_log(str(pinning_log))
    builds = [r for r in records if r["event"] == "build"]
    calls = [r for r in records if r["event"] == "generate"]
    assert calls, records
    for record in records:
        # The worker pinned itself to exactly the GPU Spark gave this task, before building.
        assert record["task_gpus"] is not None and len(record["task_gpus"]) == 1, record
        assert record["cuda_visible_devices"] == record["task_gpus"][0], record
    per_executor = defaultdict(set)
    for record in builds:
        per_executor[record["executor"]].add(record["cuda_visible_devices"])
    assert len(per_executor) == 2, builds  # two executors built engines...
    assert sorted(gpu for gpus in per_executor.values() for gpu in gpus) == ["0", "1"]
    assert len(builds) == 2, builds  # ...once each, reused by every later task there
    assert {r["instance"] for r in calls} == {r["instance"] for r in builds}

    run_describe(local, spark, make_engine=make_where_engine)
    cluster_rows = table_rows(spark, str(tmp_path / "results"))
    assert len(cluster_rows) == 8
    assert cluster_rows == table_rows(spark, local.results_table)


@pytest.mark.timeout(300)
def test_tasks_sharing_a_gpu_stop_on_the_driver_before_any_engine(
    tmp_path, archive, cluster, tests_zip,
):
    pinning_log = tmp_path / "pinning.jsonl"
    # No input table: the driver must stop before it reads one (or starts a SparkContext).
    config = _cluster_config(tmp_path, cluster, archive, pinning_log, str(tmp_path / "none"))

    # Added after submit-args' options, as a user would: dynamic allocation, two cores and half
    # a GPU per task, so two engine tasks of one executor would share its GPU (with dynamic
    # allocation on, the engine stage cannot ask for a whole GPU itself). The command line wins
    # over the config.
    _, done = submit_describe(config, "--conf", "spark.executor.cores=2",
                              "--conf", "spark.dynamicAllocation.enabled=true",
                              "--conf", "spark.task.resource.gpu.amount=0.5", py_files=tests_zip,
                              env=DRIVER_ENV)

    assert done.returncode == 2, failure_report(done.stdout, done.stderr)
    # spark-submit merges the Python driver's stderr into its stdout.
    assert "spark.task.resource.gpu.amount=0.5 lets 2 tasks share one GPU" in done.stdout
    assert "turn it off, or set spark.task.resource.gpu.amount=1" in done.stdout
    assert "Registered executor" not in done.stderr  # no SparkContext, so no executor
    assert read_pinning_log(str(pinning_log)) == []
