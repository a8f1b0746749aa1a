"""Check, on the driver, that a Spark configuration gives every describing task GPUs of its own.

A vLLM engine takes a GPU's memory for itself (``engine.gpu_memory_utilization`` of it). Two
tasks that share a GPU each load the model there, and the second one fails with CUDA out of
memory minutes into the run, on an executor, after both paid for the model load. An executor
without a GPU resource leaves ``CUDA_VISIBLE_DEVICES`` alone (``udfs.engines.gpu.pin_task_gpus``),
so every engine on a node lands on the node's first GPU. Both are visible in the Spark conf before
anything is scheduled; ``check_gpu_layout`` refuses them with a message naming the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from jobs.config import ConfigError

log = logging.getLogger("candid.gpu")

EXECUTOR_GPUS = "spark.executor.resource.gpu.amount"
TASK_GPUS = "spark.task.resource.gpu.amount"
DISCOVERY_SCRIPT = "spark.executor.resource.gpu.discoveryScript"
EXECUTOR_CORES = "spark.executor.cores"
TASK_CPUS = "spark.task.cpus"
FIX_HINT = (
    f"one GPU per task: {EXECUTOR_GPUS}=1, {TASK_GPUS}=1, {DISCOVERY_SCRIPT} (see "
    "conf/spark/gpu-cluster.yaml and docs/CLUSTER.md)"
)


def _amount(confs: Mapping[str, str], key: str) -> float | None:
    raw = confs.get(key)
    if raw is None or not str(raw).strip():
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a number") from None


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
                    f"resource ({EXECUTOR_GPUS} and {TASK_GPUS} are unset): every executor's "
                    f"engine would load on the node's first GPU. Set {FIX_HINT}"]
        return []
    if executor is None or task is None:
        missing = EXECUTOR_GPUS if executor is None else TASK_GPUS
        return [f"{missing} is unset while the other GPU amount is set: set {FIX_HINT}"]
    if task < 1:
        return [f"{TASK_GPUS}={task:g} lets {int(round(1 / task))} tasks share one GPU, and "
                f"each loads the model into it (CUDA out of memory on the second): set "
                f"{TASK_GPUS}=1 (or a whole number of GPUs per task)"]
    if task != int(task):
        return [f"{TASK_GPUS}={task:g}: give each task a whole number of GPUs (set "
                f"{TASK_GPUS}=1)"]
    if task > executor:
        return [f"{TASK_GPUS}={task:g} asks for more GPUs than an executor has "
                f"({EXECUTOR_GPUS}={executor:g})"]
    return []


def idle_gpus(confs: Mapping[str, str]) -> int:
    """GPUs per executor that no task can use, because cores run out first (0 when unknown)."""
    executor, task = _amount(confs, EXECUTOR_GPUS), _amount(confs, TASK_GPUS)
    cores, cpus = _amount(confs, EXECUTOR_CORES), _amount(confs, TASK_CPUS) or 1.0
    if not executor or not task or cores is None:
        return 0
    by_cores = int(cores // cpus)
    return max(0, int(executor // task) - by_cores) * int(task)


def check_gpu_layout(confs: Mapping[str, str], require_gpu: bool) -> None:
    """Raise ``ConfigError`` naming the settings to fix; warn about GPUs left idle.

    Raises:
        ConfigError: tasks would share a GPU, or a GPU profile has no GPU resource.
    """
    problems = gpu_layout_problems(confs, require_gpu)
    if problems:
        raise ConfigError("GPU layout: " + "; ".join(problems))
    idle = idle_gpus(confs)
    if idle:
        log.warning(
            "%d GPU(s) per executor stay idle: %s / %s allow fewer concurrent tasks than %s / "
            "%s", idle, EXECUTOR_CORES, TASK_CPUS, EXECUTOR_GPUS, TASK_GPUS,
        )
