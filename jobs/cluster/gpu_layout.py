"""The GPU layout of a Spark session: checked on the driver before anything is scheduled, and the
resources each engine task asks for.

A vLLM engine takes a GPU's memory for itself (``engine.gpu_memory_utilization`` of it). Two
tasks that share a GPU each load the model there, and the second one fails with CUDA out of
memory minutes into the run, on an executor, after both paid for the model load. An executor
without a GPU resource leaves ``CUDA_VISIBLE_DEVICES`` alone (``udfs.engines.gpu.pin_task_gpus``),
so every engine on a node lands on the node's first GPU. Both are visible in the Spark conf before
anything is scheduled; ``check_gpu_layout`` refuses them with a message naming the settings.

Two ways give an engine task its GPU:

- **per stage** (the shipped GPU profile): executors declare their GPUs, no task-wide GPU amount
  is set, and only the engine stage asks for one GPU and ``spark.candid.engine.taskCpus`` cores
  per task (a Spark task resource profile, ``engine_stage_profile``). A chunk's commit and
  write-back tasks then need no GPU and run on the executor's other cores while the next
  chunk's engine tasks hold every GPU (``benchmarks/bench_fleet.py`` measured the difference).
  Spark schedules such profiles on the executors it started only with dynamic allocation off.
- **session-wide**: ``spark.task.resource.gpu.amount=1`` makes every task of every stage take a
  GPU, commits included; those wait for an engine task to end. Kept for clusters that set it
  (some managed GPU clusters do); the driver warns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from jobs.config import ConfigError

log = logging.getLogger("candid.gpu")

EXECUTOR_GPUS = "spark.executor.resource.gpu.amount"
TASK_GPUS = "spark.task.resource.gpu.amount"
DISCOVERY_SCRIPT = "spark.executor.resource.gpu.discoveryScript"
EXECUTOR_CORES = "spark.executor.cores"
TASK_CPUS = "spark.task.cpus"
ENGINE_TASK_CPUS = "spark.candid.engine.taskCpus"
DYNAMIC_ALLOCATION = "spark.dynamicAllocation.enabled"
FIX_HINT = (
    f"GPUs on every executor and one per engine task: {EXECUTOR_GPUS}=1 (or the node's GPU "
    f"count), {DISCOVERY_SCRIPT}, {TASK_GPUS} unset so that only the engine stage asks for a GPU "
    "(see conf/spark/gpu-cluster.yaml and docs/CLUSTER.md)"
)


@dataclass(frozen=True)
class EngineTaskResources:
    """What one engine task takes: ``cpus`` cores and one GPU; ``per_stage``: the engine stage
    asks for them itself (False: every task of the session takes a GPU)."""

    cpus: int
    per_stage: bool


def _amount(confs: Mapping[str, str], key: str) -> float | None:
    raw = confs.get(key)
    if raw is None or not str(raw).strip():
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a number") from None


def _enabled(confs: Mapping[str, str], key: str) -> bool:
    return str(confs.get(key, "false")).strip().lower() == "true"


def engine_task_resources(confs: Mapping[str, str]) -> EngineTaskResources | None:
    """The engine task's share of an executor, or None where executors declare no GPU."""
    if _amount(confs, EXECUTOR_GPUS) is None:
        return None
    task_cpus = int(_amount(confs, TASK_CPUS) or 1)
    if _amount(confs, TASK_GPUS) is not None:
        return EngineTaskResources(cpus=task_cpus, per_stage=False)
    return EngineTaskResources(cpus=int(_amount(confs, ENGINE_TASK_CPUS) or task_cpus),
                               per_stage=True)


def gpu_layout_problems(confs: Mapping[str, str], require_gpu: bool) -> list[str]:
    """What is wrong with the GPU settings in ``confs`` (empty: nothing).

    Args:
        confs: the Spark conf (the session's effective one, or what it is about to get).
        require_gpu: the Spark profile says the engine runs on GPUs (``gpu: true``), so a
            missing GPU resource is an error rather than a CPU run.
    """
    executor, task = _amount(confs, EXECUTOR_GPUS), _amount(confs, TASK_GPUS)
    if executor is None and task is None:
        if require_gpu:
            return [f"the Spark profile runs the engine on GPUs but the session declares no GPU "
                    f"resource ({EXECUTOR_GPUS} is unset): every executor's engine would load "
                    f"on the node's first GPU. Set {FIX_HINT}"]
        return []
    if executor is None:
        return [f"{TASK_GPUS} is set but {EXECUTOR_GPUS} is unset: set {FIX_HINT}"]
    if task is None:
        return _per_stage_problems(confs)
    if task <= 0:
        return [f"{TASK_GPUS}={task:g}: leave it unset (the engine stage asks for one GPU per "
                "task)"]
    if task < 1:
        return [f"{TASK_GPUS}={task:g} lets {int(round(1 / task))} tasks share one GPU, and "
                f"each loads the model into it (CUDA out of memory on the second): leave "
                f"{TASK_GPUS} unset (the engine stage asks for one GPU per task) or set it to 1"]
    if task != int(task):
        return [f"{TASK_GPUS}={task:g}: give each task a whole number of GPUs (leave "
                f"{TASK_GPUS} unset, or set it to 1)"]
    if task > executor:
        return [f"{TASK_GPUS}={task:g} asks for more GPUs than an executor has "
                f"({EXECUTOR_GPUS}={executor:g})"]
    return []


def _per_stage_problems(confs: Mapping[str, str]) -> list[str]:
    engine = engine_task_resources(confs)
    assert engine is not None  # executors declare GPUs here
    if _enabled(confs, DYNAMIC_ALLOCATION):
        return [f"{DYNAMIC_ALLOCATION}=true: the engine stage's GPU request (a Spark task "
                f"resource profile) runs on the executors Spark started only with dynamic "
                f"allocation off; turn it off, or set {TASK_GPUS}=1 so that every task takes "
                "a GPU (commits then wait for engine tasks)"]
    cores = _amount(confs, EXECUTOR_CORES)
    if cores is not None and engine.cpus > cores:
        return [f"{ENGINE_TASK_CPUS}={engine.cpus} is more than an executor's cores "
                f"({EXECUTOR_CORES}={cores:g}): no engine task could start"]
    return []


def engine_slots_per_executor(confs: Mapping[str, str]) -> int | None:
    """Engine tasks one executor runs at once (one per GPU, as far as cores allow); None when
    executors declare no GPU or their cores are unknown."""
    engine = engine_task_resources(confs)
    cores = _amount(confs, EXECUTOR_CORES)
    if engine is None or cores is None:
        return None
    executor_gpus = _amount(confs, EXECUTOR_GPUS) or 0
    gpus_per_task = _amount(confs, TASK_GPUS) or 1
    return min(int(executor_gpus // gpus_per_task), int(cores // engine.cpus))


def engine_slots(confs: Mapping[str, str], total_cores: int) -> int:
    """Engine tasks that run at once over executors with ``total_cores`` cores in all (Spark's
    default parallelism counts cores, and an engine task takes several)."""
    per_executor = engine_slots_per_executor(confs)
    if per_executor is not None:
        executors = max(1, total_cores // int(_amount(confs, EXECUTOR_CORES) or 1))
        return max(1, executors * per_executor)
    return max(1, total_cores // int(_amount(confs, TASK_CPUS) or 1))


def idle_gpus(confs: Mapping[str, str]) -> int:
    """GPUs per executor that no task can use, because cores run out first (0 when unknown)."""
    per_executor = engine_slots_per_executor(confs)
    if per_executor is None:
        return 0
    gpus_per_task = int(_amount(confs, TASK_GPUS) or 1)
    return max(0, int(_amount(confs, EXECUTOR_GPUS) or 0) - per_executor * gpus_per_task)


def check_gpu_layout(confs: Mapping[str, str], require_gpu: bool) -> None:
    """Raise ``ConfigError`` naming the settings to fix; warn about GPUs left idle and about
    commits that wait for GPU slots.

    Raises:
        ConfigError: tasks would share a GPU, or a GPU profile has no GPU resource.
    """
    problems = gpu_layout_problems(confs, require_gpu)
    if problems:
        raise ConfigError("GPU layout: " + "; ".join(problems))
    idle = idle_gpus(confs)
    if idle:
        log.warning("%d GPU(s) per executor stay idle: %s allows fewer engine tasks (of %d "
                    "cores each) than %s", idle, EXECUTOR_CORES,
                    engine_task_resources(confs).cpus, EXECUTOR_GPUS)
    engine = engine_task_resources(confs)
    if engine is not None and not engine.per_stage:
        log.warning("%s applies to every task: a chunk's commit and write-back wait for a GPU "
                    "slot while the next chunk's engine tasks hold them; leave it unset so that "
                    "only the engine stage asks for GPUs (docs/CLUSTER.md)", TASK_GPUS)


def session_engine_slots(spark) -> int:
    """``engine_slots`` of a running session: its effective conf, its executors' cores."""
    context = spark.sparkContext
    return engine_slots(dict(context.getConf().getAll()), context.defaultParallelism)


# Built once per application and engine task size: Spark registers every profile it is given
# as a new one, and a run asks for the engine's once per chunk, from two threads when chunks
# are pipelined.
_ENGINE_PROFILES: dict[tuple[str, int], object] = {}
_ENGINE_PROFILES_LOCK = threading.Lock()


def engine_stage_profile(spark):
    """The task resource profile of stages that run the engine (one GPU and the engine's cores
    per task), or None where the session gives tasks their GPUs itself or has none."""
    context = spark.sparkContext
    engine = engine_task_resources(dict(context.getConf().getAll()))
    if engine is None or not engine.per_stage:
        return None
    key = (context.applicationId, engine.cpus)
    with _ENGINE_PROFILES_LOCK:
        if key not in _ENGINE_PROFILES:
            from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

            requests = TaskResourceRequests().cpus(engine.cpus).resource("gpu", 1.0)
            _ENGINE_PROFILES[key] = ResourceProfileBuilder().require(requests).build
        return _ENGINE_PROFILES[key]
