"""The GPU layout of a Spark session: checked on the driver before anything is scheduled, and the
resources each engine task asks for.

A vLLM engine takes a GPU's memory for itself (``engine.gpu_memory_utilization`` of it). Two
tasks that share a GPU each load the model there, and the second one fails with CUDA out of
memory minutes into the run, on an executor, after both paid for the model load. An executor
without a GPU resource leaves ``CUDA_VISIBLE_DEVICES`` alone (``udfs.engines.gpu.pin_task_gpus``),
so every engine on a node lands on the node's first GPU. Both are visible in the Spark conf before
anything is scheduled; ``check_gpu_layout`` refuses them with a message naming the settings.

Two ways give an engine task its GPU:

- **per stage** (whenever dynamic allocation is off, as in the shipped GPU profile): the stages
  that run the engine carry a Spark task resource profile of their own, one whole GPU and
  ``spark.candid.engine.taskCpus`` cores per task (``engine_stage_profile``). Every other task
  takes the task-wide GPU amount: none (the profile sets none), a fraction (``1/cores``, for
  clusters that insist on one), or 1, which makes a chunk's commit and write-back tasks wait for
  a GPU while the next chunk's engine tasks hold them (the driver warns;
  ``benchmarks/bench_fleet.py`` measured the difference).
- **session-wide** (dynamic allocation on: Spark runs a task resource profile on the executors
  it started only with dynamic allocation off): ``spark.task.resource.gpu.amount=1`` gives every
  task of every stage a GPU, the engine's included.
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
    f"count), {DISCOVERY_SCRIPT}, {TASK_GPUS} unset (or 1/cores) so that only the engine stage "
    "asks for a whole GPU "
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
    """The engine task's share of an executor, or None where executors declare no GPU.
    Per stage unless dynamic allocation is on (then only a task-wide GPU amount works)."""
    if _amount(confs, EXECUTOR_GPUS) is None:
        return None
    task_cpus = int(_amount(confs, TASK_CPUS) or 1)
    if _enabled(confs, DYNAMIC_ALLOCATION):
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
    if task is not None and task <= 0:
        return [f"{TASK_GPUS}={task:g}: leave it unset (the engine stage asks for one GPU per "
                "task)"]
    if task is not None and task > 1 and task != int(task):
        return [f"{TASK_GPUS}={task:g}: give each task a whole number of GPUs, a fraction "
                f"of one, or leave {TASK_GPUS} unset"]
    if task is not None and task > executor:
        return [f"{TASK_GPUS}={task:g} asks for more GPUs than an executor has "
                f"({EXECUTOR_GPUS}={executor:g})"]
    engine = engine_task_resources(confs)
    assert engine is not None  # executors declare GPUs here
    if not engine.per_stage and (task is None or task < 1):
        shared = " is unset" if task is None else (
            f"={task:g} lets {int(round(1 / task))} tasks share one GPU, and each loads the "
            "model into it (CUDA out of memory on the second)")
        return [f"{DYNAMIC_ALLOCATION}=true and {TASK_GPUS}{shared}: the engine stage's own "
                f"GPU request (a Spark task resource profile) needs dynamic allocation off; "
                f"turn it off, or set {TASK_GPUS}=1 (every task then takes a GPU)"]
    cores = _amount(confs, EXECUTOR_CORES)
    if engine.per_stage and cores is not None and engine.cpus > cores:
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
    return min(int((_amount(confs, EXECUTOR_GPUS) or 0) // _engine_task_gpus(confs, engine)),
               int(cores // engine.cpus))


def _engine_task_gpus(confs: Mapping[str, str], engine: EngineTaskResources) -> float:
    return 1.0 if engine.per_stage else (_amount(confs, TASK_GPUS) or 1.0)


def engine_slots(confs: Mapping[str, str], total_cores: int) -> int:
    """Engine tasks that run at once over executors with ``total_cores`` cores in all (Spark's
    default parallelism counts cores, and an engine task takes several)."""
    per_executor = engine_slots_per_executor(confs)
    if per_executor is not None:
        executors = max(1, total_cores // int(_amount(confs, EXECUTOR_CORES) or 1))
        return max(1, executors * per_executor)
    return max(1, total_cores // int(_amount(confs, TASK_CPUS) or 1))


def idle_gpus(confs: Mapping[str, str]) -> int:
    """GPUs per executor that no engine task can use, because cores run out first (0 when
    unknown)."""
    per_executor = engine_slots_per_executor(confs)
    if per_executor is None:
        return 0
    engine = engine_task_resources(confs)
    used = per_executor * _engine_task_gpus(confs, engine)
    return max(0, int((_amount(confs, EXECUTOR_GPUS) or 0) - used))


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
    task = _amount(confs, TASK_GPUS)
    if task is not None and task >= 1:
        log.warning("%s=%g makes every task take a whole GPU: a chunk's commit and write-back "
                    "wait for a GPU slot while the engine tasks hold them; leave it unset (or "
                    "1/%s) so that only the engine stage asks for whole GPUs (docs/CLUSTER.md)",
                    TASK_GPUS, task, EXECUTOR_CORES)


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
