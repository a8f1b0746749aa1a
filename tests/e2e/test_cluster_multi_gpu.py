"""The engine placement on a real Spark standalone cluster (``tests.standalone``): one worker
with 2 fake GPUs, one executor holding both (``spark.executor.resource.gpu.amount=2``) and
running 2 tasks at once with one GPU each, as on a Databricks node with several GPUs.
Executors run this repository's venv (``spark.pyspark.python``, ``PYTHONPATH``).

What it proves:
- every request of a task ran on an engine server whose only GPU is the task's, exactly one
  engine was built per GPU over a run of 3 chunks, and the rows equal the ``local[2]`` run;
- the engine outlives Spark's idle Python workers: with a pause of 80 s between two actions
  the second action's tasks run in new workers, and still no engine is built again (that job
  starts with the module, on its own executor and GPUs, so its pause overlaps the other tests);
- the real vLLM CPU engine serves a describe job through its server (one build);
- after the driver exits, no engine server is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.cluster_fakes import PINNING_LOG_ENV, make_where_engine, read_pinning_log
from tests.command_logs import failure_report
from tests.conftest import describe_config
from tests.small_spark import SMALL_DATA_CONFS
from tests.standalone import (
    DISCOVERY_SCRIPT,
    StandaloneCluster,
    clean_env,
    start_cluster,
    submit_describe,
    table_rows,
)
from udfs.engines.server.protocol import ProcessId

pytestmark = [pytest.mark.e2e, pytest.mark.spark]
REPO = Path(__file__).resolve().parents[2]
GPU_PROFILE = REPO / "conf" / "spark" / "gpu-cluster.yaml"
# Spark stops Python workers idle for 60 s, checking every 10 s: 80 s is past both.
IDLE_PAUSE_S = 80
# An engine server looks at its executor once a second; stopping an engine takes a moment more.
SERVER_EXIT_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One worker with 4 fake GPUs and 6 cores: room for two applications of 2 GPUs each, the
    idle-workers job (2 cores) and the test running beside it (up to 3: a core for commits
    beside two engine tasks)."""
    started = start_cluster(tmp_path_factory.mktemp("standalone-4gpu"), gpus=["0", "1", "2", "3"],
                            cores=6, memory="3g")
    yield started
    started.stop()


@dataclass
class IdleJob:
    proc: subprocess.Popen
    pinning_log: Path
    output: Path

    def wait(self) -> tuple[int, str]:
        self.proc.wait(timeout=600)
        return self.proc.returncode, self.output.read_text(errors="replace")


@pytest.fixture(scope="module", autouse=True)
def idle_job(cluster, sample_images, tmp_path_factory):
    """``tests/placement_job.py`` with its 80 s pause, started before the module's first test
    so that the pause (idle CPU) overlaps them; ``test_the_engine_outlives_idle_python_workers``,
    the module's last test, waits for it and checks it."""
    tmp = tmp_path_factory.mktemp("idle-job")
    pinning_log, output = tmp / "pinning.jsonl", tmp / "output.log"
    confs = _executor_confs(pinning_log, per_stage=False)
    command = [sys.executable, str(REPO / "tests" / "placement_job.py"), "--master", cluster.url,
               "--images", str(sample_images.folder), "--pause", str(IDLE_PAUSE_S),
               *[arg for key, value in confs.items() for arg in ("--conf", f"{key}={value}")]]
    with open(output, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                                env=clean_env(PYTHONPATH=str(REPO), PYSPARK_PYTHON=sys.executable,
                                              **{PINNING_LOG_ENV: str(pinning_log)}))
    job = IdleJob(proc, pinning_log, output)
    yield job
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=60)


def _executor_confs(pinning_log: Path, gpus: int = 2, per_stage: bool = True) -> dict[str, str]:
    """One executor with ``gpus`` GPUs running this repository's venv. ``per_stage`` (the
    shipped profile's way): only the engine stage asks for a GPU and one core per task, and one
    more core runs commits beside the engines; otherwise every task takes a core and a GPU
    (``spark.task.resource.gpu.amount=1``)."""
    cores = gpus + 1 if per_stage else gpus
    gpu_per_task = ({"spark.candid.engine.taskCpus": "1"} if per_stage
                    else {"spark.task.resource.gpu.amount": "1"})
    return {
        **SMALL_DATA_CONFS,
        "spark.executor.cores": str(cores), "spark.task.cpus": "1", "spark.cores.max": str(cores),
        "spark.executor.resource.gpu.amount": str(gpus), **gpu_per_task,
        "spark.executor.resource.gpu.discoveryScript": str(DISCOVERY_SCRIPT),
        "spark.executor.memory": "640m", "spark.executor.memoryOverhead": "384m",
        "spark.pyspark.python": sys.executable, "spark.executorEnv.PYTHONPATH": str(REPO),
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
        f"spark.executorEnv.{PINNING_LOG_ENV}": str(pinning_log),
    }


def _job_config(tmp: Path, cluster: StandaloneCluster, confs: dict[str, str], input_table: str,
                **overrides) -> Path:
    config = describe_config(tmp, "fake-where", mlflow__enabled=False,
                             input_table=input_table, **overrides).model_dump(mode="json")
    config["spark"] = {"profile": str(GPU_PROFILE), "master": cluster.url, "conf": {
        **confs, "spark.driver.memory": "1g", "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2", "spark.databricks.delta.snapshotPartitions": "2"}}
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _stage_profiles(events: Path) -> tuple[dict[int, dict[str, float]], list[tuple[int, int]]]:
    """From the application's Spark event log: each resource profile's task requests (resource
    -> amount) and each completed stage's (profile id, task count)."""
    import json

    profiles, stages = {}, []
    # Spark 4 writes one folder per application, its events in rolled files inside.
    for log in sorted(path for path in events.rglob("events_*") if path.is_file()):
        for line in log.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            if event["Event"] == "SparkListenerResourceProfileAdded":
                profiles[event["Resource Profile Id"]] = {
                    name: request["Amount"]
                    for name, request in event["Task Resource Requests"].items()}
            elif event["Event"] == "SparkListenerStageCompleted":
                info = event["Stage Info"]
                stages.append((info["Resource Profile Id"], info["Number of Tasks"]))
    return profiles, stages


def _servers_gone(pids: set[int]) -> set[int]:
    """The pids among ``pids`` still alive once the deadline passes (empty: all exited)."""
    deadline = time.monotonic() + SERVER_EXIT_DEADLINE_S
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if ProcessId.of(pid).alive()}
        if alive:
            time.sleep(0.2)
    return alive


def _check_requests_ran_on_their_task_gpu(records: list[dict]) -> list[dict]:
    """The builds; asserts each call ran in a server built for the task's one GPU."""
    builds = [r for r in records if r["event"] == "build"]
    calls = [r for r in records if r["event"] == "generate"]
    assert calls, records
    server_gpu = {r["pid"]: r["cuda_visible_devices"] for r in builds}
    for record in builds + calls:
        assert record["task_gpus"] is not None and len(record["task_gpus"]) == 1, record
        assert record["cuda_visible_devices"] == record["task_gpus"][0], record
        assert server_gpu[record["pid"]] == record["cuda_visible_devices"], record
    return builds


@pytest.mark.timeout(900)
def test_two_gpus_in_one_executor_one_engine_each_rows_as_local(
    spark, sample_images, tmp_path, cluster,
):
    from jobs.config import IngestConfig
    from jobs.describe.run import run_describe
    from jobs.tables.ingest import run_ingest

    # 8 images in 3 chunks (3, 3, 2) of 2 partitions each: 6 tasks on 2 slots.
    shape = {"batch_size": 2, "partitions": 2, "chunk_size": 3}
    local = describe_config(tmp_path / "local", "fake-where", mlflow__enabled=False, **shape)
    local = local.model_copy(update={"engine": local.engine.model_copy(
        update={"model_id": "test/fake-where"})})
    run_ingest(IngestConfig(source=str(sample_images.folder), table=local.input_table), spark)
    pinning_log, events = tmp_path / "pinning.jsonl", tmp_path / "events"
    events.mkdir()
    confs = {**_executor_confs(pinning_log), "spark.eventLog.enabled": "true",
             "spark.eventLog.compress": "false", "spark.eventLog.dir": events.as_uri()}
    config = _job_config(tmp_path, cluster, confs, local.input_table,
                         engine__model_id="test/fake-where", **shape)

    _, done = submit_describe(config, env={"PYTHONPATH": str(REPO)})

    assert done.returncode == 0, failure_report(done.stdout, done.stderr) + cluster.log_tail()
    assert "statuses: ok=8" in done.stdout and "in 3 chunk(s)" in done.stdout
    records = read_pinning_log(str(pinning_log))
    builds = _check_requests_ran_on_their_task_gpu(records)
    # Exactly one engine per GPU for the whole run (two of the worker's four: the idle-workers
    # job holds the other two), in two processes of one executor.
    gpus = [r["cuda_visible_devices"] for r in builds]
    assert len(gpus) == len(set(gpus)) == 2 and set(gpus) <= {"0", "1", "2", "3"}, builds
    assert len({r["executor"] for r in builds}) == 1 and len({r["pid"] for r in builds}) == 2
    calls = [r for r in records if r["event"] == "generate"]
    assert {r["instance"] for r in calls} == {r["instance"] for r in builds}
    assert not _servers_gone({r["pid"] for r in builds})  # none left once spark-submit exited
    # Only the engine stages asked for a GPU: one per chunk, 2 tasks each (a GPU and a core per
    # task); every other stage (staging count, MERGE, write-back) ran on the default profile,
    # which asks for no GPU.
    profiles, stages = _stage_profiles(events)
    assert profiles[0] == {"cpus": 1.0}, profiles
    gpu_profiles = {pid for pid, asks in profiles.items() if asks == {"cpus": 1.0, "gpu": 1.0}}
    assert len(gpu_profiles) == 1 and set(profiles) == {0} | gpu_profiles, profiles  # one per run
    engine_stages = [tasks for profile, tasks in stages if profile in gpu_profiles]
    assert len(engine_stages) == 3 and set(engine_stages) == {2}, stages
    assert len([tasks for profile, tasks in stages if profile == 0]) >= 3, stages

    run_describe(local, spark, make_engine=make_where_engine)
    cluster_rows = table_rows(spark, str(tmp_path / "results"))
    assert len(cluster_rows) == 8
    assert cluster_rows == table_rows(spark, local.results_table)


@pytest.mark.timeout(900)
def test_the_real_vllm_engine_serves_a_job_through_its_server(
    spark, sample_images, tiny_model_dir, tmp_path, cluster,
):
    from jobs.config import IngestConfig
    from jobs.tables.ingest import run_ingest

    input_table = str(tmp_path / "images")
    run_ingest(IngestConfig(source=str(sample_images.folder), table=input_table), spark)
    started = time.time()
    confs = {**_executor_confs(tmp_path / "unused.jsonl", gpus=1),
             "spark.executorEnv.VLLM_CACHE_ROOT": str(REPO / "build" / "cache" / "vllm")}
    config = _job_config(tmp_path, cluster, confs, input_table, batch_size=4, partitions=1,
                         engine__model=str(tiny_model_dir))

    _, done = submit_describe(config, env={"PYTHONPATH": str(REPO)},
                              job=REPO / "jobs" / "cli.py")

    assert done.returncode == 0, failure_report(done.stdout, done.stderr) + cluster.log_tail()
    assert "statuses: ok=8" in done.stdout
    logs = [p for p in _server_logs() if p.stat().st_mtime >= started]
    built = [line for p in logs for line in p.read_text(errors="replace").splitlines()
             if "built engine" in line and str(tiny_model_dir) in line]
    assert len(built) == 1, [p.read_text(errors="replace")[-2000:] for p in logs]
    pid = int(built[0].split("engine server ")[1].split()[0])
    assert not _servers_gone({pid})


@pytest.mark.timeout(900)
def test_the_engine_outlives_idle_python_workers(idle_job, cluster):
    returncode, output = idle_job.wait()

    assert returncode == 0, output[-4000:] + cluster.log_tail()
    assert output.count("8 rows, statuses ['ok']") == 2, output[-4000:]
    records = read_pinning_log(str(idle_job.pinning_log))
    pause = next(i for i, r in enumerate(records) if r["event"] == "pause")
    before = {r["pid"] for r in records[:pause] if r["event"] == "task"}
    after = {r["pid"] for r in records[pause:] if r["event"] == "task"}
    # Spark stopped the first action's idle workers: the second action ran in new ones...
    assert before and after and not before & after, records
    builds = _check_requests_ran_on_their_task_gpu(records)
    # ...and yet no GPU's engine was built again.
    assert all(count == 1 for count in Counter(r["cuda_visible_devices"] for r in builds).values())
    assert all(records.index(build) < pause for build in builds)
    assert {r["pid"] for r in records[pause:] if r["event"] == "generate"} <= {
        r["pid"] for r in builds}
    assert not _servers_gone({r["pid"] for r in builds})


def _server_logs() -> list[Path]:
    """The engine servers' logs of this user on this machine (``ServerAddress`` folders)."""
    folders = {Path(base) / f"candid-engines-{os.getuid()}"
               for base in (tempfile.gettempdir(), "/tmp")}
    return sorted(log for folder in folders for log in folder.glob("*.log"))
