"""Pin a Spark task's Python worker to the GPUs Spark assigned to the task.

Must run before anything initialises CUDA (importing vllm or torch.cuda calls): CUDA reads
``CUDA_VISIBLE_DEVICES`` once per process. This is the one setting taken from the environment
rather than from arguments, because CUDA itself only reads it there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

GPU_RESOURCE = "gpu"


def cuda_visible_devices(resources: Mapping[str, Any]) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` value for a task's resources, or None without GPUs.

    Args:
        resources: ``TaskContext.resources()``: name -> ResourceInformation (with
            ``.addresses``), or name -> list of addresses.
    """
    info = resources.get(GPU_RESOURCE)
    if info is None:
        return None
    addresses: Sequence[str] = getattr(info, "addresses", info)
    addresses = [str(a).strip() for a in addresses if str(a).strip()]
    return ",".join(addresses) if addresses else None


def task_gpus() -> tuple[str, ...] | None:
    """The GPU addresses Spark assigned to the current task; None outside a task or without a
    GPU resource (local mode)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:
        return None
    wanted = cuda_visible_devices(context.resources())
    return tuple(wanted.split(",")) if wanted is not None else None


def task_identity() -> dict[str, int]:
    """Which task this is (stage, partition, attempt), for an engine server's logs."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:
        return {}
    return {"stage": context.stageId(), "partition": context.partitionId(),
            "attempt": context.attemptNumber(), "task_attempt_id": context.taskAttemptId()}


def pin_task_gpus() -> str | None:
    """Set ``CUDA_VISIBLE_DEVICES`` from the current Spark task's GPU addresses, for an engine
    inside this Python worker (``engine.placement: worker``).

    Returns the value set, or None when there is no task context or no GPU resource (local
    mode), in which case nothing is changed. If the worker was already pinned to other GPUs
    (a reused worker given another task's GPU), CUDA cannot follow: raise instead of silently
    running on the wrong device (the engine server placement has no such limit).
    """
    gpus = task_gpus()
    if gpus is None:
        return None
    wanted = ",".join(gpus)
    current = os.environ.get("CUDA_VISIBLE_DEVICES")
    if current is not None and current != wanted and _cuda_initialised():
        raise RuntimeError(
            f"this Python worker already uses GPU(s) {current} but the task was given {wanted}; "
            "use engine.placement: server (or auto), or run one task per GPU executor "
            "(spark.executor.resource.gpu.amount=1, conf/spark/gpu-cluster.yaml)"
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = wanted
    return wanted


def _cuda_initialised() -> bool:
    import sys

    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())
