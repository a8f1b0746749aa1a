"""The cluster-facing settings agree with each other: the GPU layout check, the shipped profiles,
and the spark-submit options ``submit_args`` prints (no Spark started here)."""

import re
import sys
from pathlib import Path

import pytest

from jobs.cluster.gpu_layout import (
    EngineTaskResources,
    check_gpu_layout,
    engine_slots,
    engine_task_resources,
    gpu_layout_problems,
    idle_gpus,
)
from jobs.cluster.spark_session import build_spark, load_profile, submit_args
from jobs.config import ConfigError
from jobs.job_settings import SparkSettings

REPO = Path(__file__).resolve().parents[2]
GPU_PROFILE = REPO / "conf" / "spark" / "gpu-cluster.yaml"
LOCAL_PROFILE = REPO / "conf" / "spark" / "local.yaml"
ONE_GPU = {"spark.executor.resource.gpu.amount": "1", "spark.task.resource.gpu.amount": "1"}
PER_STAGE_GPU = {"spark.executor.resource.gpu.amount": "1"}


def _confs(args: list[str]) -> dict[str, str]:
    return dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")


@pytest.mark.parametrize("confs, require, fragment", [
    ({}, True, "declares no GPU resource"),
    # With dynamic allocation on, the engine stage cannot ask for a whole GPU itself, so a
    # fractional (or no) task-wide amount would let engines share a GPU.
    ({**ONE_GPU, "spark.task.resource.gpu.amount": "0.5", "spark.dynamicAllocation.enabled": "true"},
     False, "spark.task.resource.gpu.amount=0.5 lets 2 tasks share one GPU"),
    ({**ONE_GPU, "spark.task.resource.gpu.amount": "0.25", "spark.dynamicAllocation.enabled": "true"},
     True, "lets 4 tasks share"),
    ({**ONE_GPU, "spark.task.resource.gpu.amount": "1.5"}, False, "1.5: give each task a whole number of GPUs"),
    ({**ONE_GPU, "spark.task.resource.gpu.amount": "0"}, False, "=0: leave it unset"),
    ({"spark.task.resource.gpu.amount": "1"}, False, "spark.executor.resource.gpu.amount is unset"),
    ({**ONE_GPU, "spark.task.resource.gpu.amount": "2"}, True, "more GPUs than an executor"),
    # Only the engine stage asks for GPUs: Spark runs such a stage on the executors it started
    # only with dynamic allocation off, and an engine task needs the cores it asks for.
    ({**PER_STAGE_GPU, "spark.dynamicAllocation.enabled": "true"}, True,
     "spark.dynamicAllocation.enabled=true and spark.task.resource.gpu.amount is unset"),
    ({**PER_STAGE_GPU, "spark.executor.cores": "4", "spark.candid.engine.taskCpus": "8"}, True,
     "spark.candid.engine.taskCpus=8 is more than an executor's cores"),
])
def test_layouts_that_share_or_lack_gpus_are_refused_with_the_settings_to_fix(confs, require, fragment):
    problems = gpu_layout_problems(confs, require)
    assert len(problems) == 1 and fragment in problems[0]
    with pytest.raises(ConfigError, match="GPU layout: .*spark\\.(task|dynamicAllocation|candid)"):
        check_gpu_layout(confs, require)


@pytest.mark.parametrize("confs, require", [
    ({}, False),  # a CPU run
    (ONE_GPU, True),
    ({"spark.executor.resource.gpu.amount": "4", "spark.task.resource.gpu.amount": "1",
      "spark.executor.cores": "32", "spark.task.cpus": "8"}, True),  # four tasks, a GPU each
    (PER_STAGE_GPU, True),  # the engine stage asks for its GPU
    # Other tasks share the GPU they do not use (1/cores, as NVIDIA's Spark RAPIDS ML suggests);
    # the engine stage still asks for a whole one.
    ({**PER_STAGE_GPU, "spark.task.resource.gpu.amount": "0.1", "spark.executor.cores": "10"}, True),
    # Dynamic allocation on: every task takes a whole GPU, the engine's included.
    ({**ONE_GPU, "spark.dynamicAllocation.enabled": "true"}, True),
    ({"spark.executor.resource.gpu.amount": "8", "spark.executor.cores": "80",
      "spark.candid.engine.taskCpus": "8", "spark.dynamicAllocation.enabled": "false"}, True),
])
def test_layouts_with_a_whole_gpu_per_task_pass(confs, require):
    assert gpu_layout_problems(confs, require) == []


def test_gpus_that_cores_leave_idle_are_counted():
    confs = {"spark.executor.resource.gpu.amount": "4", "spark.task.resource.gpu.amount": "1",
             "spark.executor.cores": "16", "spark.task.cpus": "8"}
    assert idle_gpus(confs) == 2
    assert idle_gpus(ONE_GPU) == 0  # cores unknown: no claim


def test_the_engine_task_takes_its_own_cores_when_only_its_stage_asks_for_a_gpu():
    # An 8-GPU node as one executor (Databricks): 8 cores per engine task, 16 left for commits.
    node = {"spark.executor.resource.gpu.amount": "8", "spark.executor.cores": "80",
            "spark.candid.engine.taskCpus": "8"}
    assert engine_task_resources(node) == EngineTaskResources(cpus=8, per_stage=True)
    assert engine_slots(node, total_cores=160) == 16  # two such executors
    assert idle_gpus(node) == 0
    assert idle_gpus({**node, "spark.executor.cores": "40"}) == 3  # 5 engine tasks fit
    # Without the engine's own setting an engine task takes spark.task.cpus (default 1).
    assert engine_task_resources(PER_STAGE_GPU) == EngineTaskResources(cpus=1, per_stage=True)
    # A fractional task-wide amount changes nothing for the engine stage.
    shared = {**node, "spark.task.resource.gpu.amount": "0.0125"}
    assert engine_task_resources(shared) == EngineTaskResources(cpus=8, per_stage=True)
    assert engine_slots(shared, total_cores=80) == 8 and idle_gpus(shared) == 0
    # Dynamic allocation on: every task takes spark.task.cpus and the task-wide GPU amount.
    wide = {**node, "spark.dynamicAllocation.enabled": "true",
            "spark.task.resource.gpu.amount": "2", "spark.task.cpus": "10"}
    assert engine_task_resources(wide) == EngineTaskResources(cpus=10, per_stage=False)
    assert engine_slots(wide, total_cores=160) == 8  # 4 two-GPU tasks per executor
    assert idle_gpus(wide) == 0
    # No GPUs: one slot per task's cores.
    assert engine_task_resources({}) is None
    assert engine_slots({"spark.task.cpus": "2"}, total_cores=8) == 4
    assert engine_slots({}, total_cores=2) == 2


def test_the_shipped_profiles_pass_their_own_check():
    gpu, local = load_profile(GPU_PROFILE), load_profile(LOCAL_PROFILE)
    assert gpu.gpu and not local.gpu
    # Commits need no GPU: only the engine stage asks for one, and cores are left beside it.
    assert "spark.task.resource.gpu.amount" not in gpu.conf
    engine = engine_task_resources(gpu.conf)
    assert engine is not None and engine.per_stage
    assert int(gpu.conf["spark.executor.cores"]) - engine.cpus >= 1
    check_gpu_layout(gpu.conf, require_gpu=True)
    check_gpu_layout(local.conf, require_gpu=False)
    # The discovery script path is the one the packed environment (and the wheel) provides.
    assert gpu.conf["spark.executor.resource.gpu.discoveryScript"] == (
        "./environment/bin/getGpusResources.sh")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'script-files = ["conf/spark/getGpusResources.sh"]' in pyproject


def test_a_gpu_profile_without_gpus_fails_before_a_jvm_starts(tmp_path):
    profile = tmp_path / "gpu-without-resources.yaml"
    profile.write_text("gpu: true\nmaster: local[1]\nconf:\n  spark.ui.enabled: 'false'\n")
    with pytest.raises(ConfigError, match="declares no GPU resource.*spark.executor.resource.gpu.amount=1"):
        build_spark(SparkSettings(profile=str(profile), delta_jars="provided"))


def test_submit_args_with_an_archive_name_no_path_of_this_machine_for_executors(tmp_path):
    archive = tmp_path / "candid-env-gpu.tar.gz"
    archive.write_bytes(b"packed")
    settings = SparkSettings(profile=str(GPU_PROFILE), archive=str(archive))
    args = submit_args(settings, python="/home/me/.venv/bin/python")
    assert args[args.index("--archives") + 1] == f"{archive}#environment"
    assert "--master" not in args  # the cluster's spark-submit names it
    confs = _confs(args)
    assert confs["spark.pyspark.python"] == "./environment/bin/python"
    assert confs["spark.pyspark.driver.python"] == "/home/me/.venv/bin/python"  # client mode
    assert confs["spark.executor.resource.gpu.discoveryScript"].startswith("./environment/")
    executor_side = {k: v for k, v in confs.items()
                     if k.startswith(("spark.executor", "spark.pyspark.python"))}
    assert not [v for v in executor_side.values() if str(REPO) in v or "/home/me" in v]


def test_submit_args_in_cluster_mode_run_the_driver_from_the_archive_too():
    settings = SparkSettings(profile=str(GPU_PROFILE), archive="hdfs:///envs/candid.tar.gz",
                             deploy_mode="cluster", delta_jars="provided")
    args = submit_args(settings)
    assert args[:2] == ["--deploy-mode", "cluster"]
    assert "hdfs:///envs/candid.tar.gz#environment" in args
    assert "--packages" not in args  # Delta is provided by the platform
    assert "spark.pyspark.driver.python" not in _confs(args)
    assert sys.executable not in " ".join(args)


def test_submit_args_for_a_local_master_use_this_interpreter_and_need_no_archive():
    args = submit_args(SparkSettings(profile=str(LOCAL_PROFILE)), python=sys.executable)
    assert args[:2] == ["--master", "local[2]"]
    assert "--packages" in args and "--archives" not in args
    assert _confs(args)["spark.pyspark.python"] == sys.executable


def test_delta_is_resolved_without_the_jars_spark_ships_itself():
    excluded = _confs(submit_args(SparkSettings(profile=str(LOCAL_PROFILE))))[
        "spark.jars.excludes"].split(",")
    # The big ones, named here: an older Hadoop client and Parquet beside Spark's own.
    assert {"org.apache.hadoop:hadoop-client-runtime", "org.apache.hadoop:hadoop-client-api",
            "org.apache.parquet:parquet-hadoop"} <= set(excluded)
    assert not any(e.startswith("io.delta:") for e in excluded)
    # Each excluded artifact is in Spark's own jars folder (another release): Delta finds it there.
    import pyspark

    shipped = {jar.name for jar in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    for coordinate in excluded:
        _, artifact = coordinate.split(":")
        assert any(re.fullmatch(rf"{re.escape(artifact)}-\d[\w.-]*\.jar", n) for n in shipped), (
            f"{coordinate}: Spark ships no {artifact}-*.jar"
        )


def test_submit_args_for_a_cluster_without_archive_leave_the_python_to_the_nodes():
    args = submit_args(SparkSettings(profile=str(GPU_PROFILE)))
    assert "spark.pyspark.python" not in _confs(args)
    assert sys.executable not in " ".join(args)


def test_a_missing_archive_is_named():
    with pytest.raises(ConfigError, match="spark.archive: no file at .*make dist"):
        submit_args(SparkSettings(profile=str(GPU_PROFILE), archive="build/dist/nope.tar.gz"))


def test_submit_args_refuse_a_layout_where_tasks_share_a_gpu():
    settings = SparkSettings(profile=str(GPU_PROFILE), delta_jars="provided",
                             conf={"spark.task.resource.gpu.amount": "0.5",
                                   "spark.dynamicAllocation.enabled": "true"})
    with pytest.raises(ConfigError, match="amount=0.5 lets 2 tasks share one GPU"):
        submit_args(settings)


def test_the_guide_quotes_the_shipped_profile_and_example_config():
    import yaml

    guide = (REPO / "docs" / "CLUSTER.md").read_text()
    profile = load_profile(GPU_PROFILE).conf
    for key in ("spark.executor.resource.gpu.amount", "spark.candid.engine.taskCpus",
                "spark.executor.cores", "spark.executor.memory",
                "spark.executor.memoryOverhead"):
        assert f"`{key}={profile[key]}`" in guide, key
    example = yaml.safe_load((REPO / "conf" / "cluster-example.yaml").read_text())
    assert example["spark"]["profile"] == "conf/spark/gpu-cluster.yaml"
    assert f"`chunk_size: {example['chunk_size']}`" in guide
    engine = example["engine"]["vllm"]
    assert f"uses {engine['max_num_seqs']} sequences and {engine['max_num_batched_tokens']} " \
           "batched tokens" in guide
    assert f"`gpu_memory_utilization: {engine['gpu_memory_utilization']:.2f}`" in guide
    assert f"`max_pixels: {example['images']['max_pixels']}` / 784" in guide
