"""A deterministic fake engine that reports where it ran, for the multi-executor tests.

Its descriptions depend on the image only (``fake WxH``), so a cluster run and an in-process
run of the same input give identical rows. Where it ran goes to a side log instead: when the
executors' environment names a file in ``PINNING_LOG_ENV`` (``spark.executorEnv.*``), every
engine build and every ``generate`` call appends one JSON line with the worker's pid, the
executor (the working directory a standalone worker gives it, ``.../<app>/<executor id>``),
the engine instance, ``CUDA_VISIBLE_DEVICES`` and the GPU addresses Spark assigned to the task
(in an engine server: the pid is the server's, and the task is the one its stream serves).

Executors import it by module name: from the repository (``PYTHONPATH``) or from a zip of
``tests/`` shipped with ``--py-files`` (the packed environment has only the wheel).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial

from tests.fakes import FakeEngine
from udfs.engines.base import Engine, Generation
from udfs.settings import EngineSettings, ImageSettings

PINNING_LOG_ENV = "CANDID_TEST_PINNING_LOG"


def _task_gpus() -> list[str] | None:
    """The GPUs Spark assigned to the task this call serves: from the task's context in a
    Python worker, or, in an engine server, from the stream's task (which the server checked
    against its own GPU before opening the stream)."""
    from pyspark import TaskContext

    from udfs.engines.server.host import serving_task

    context = TaskContext.get()
    if context is None:
        task = serving_task()
        return task["gpus"] if task is not None else None
    info = context.resources().get("gpu")
    return list(info.addresses) if info is not None else None


def _record(event: str, instance: str) -> None:
    path = os.environ.get(PINNING_LOG_ENV)
    if not path:
        return
    line = json.dumps({
        "event": event, "pid": os.getpid(), "instance": instance,
        "executor": os.path.basename(os.getcwd()),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "task_gpus": _task_gpus(),
    })
    # One write of one short line with O_APPEND: lines of concurrent workers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class WhereEngine(FakeEngine):
    """Describes an image by its size; logs its build and every call (see module docstring)."""

    def __init__(self, settings: EngineSettings, image_settings: ImageSettings):
        super().__init__(settings, image_settings)
        _record("build", self.instance)

    def generate(self, images: Sequence, prompt, sampling) -> list[Generation]:
        _record("generate", self.instance)
        return super().generate(images, prompt, sampling)

    def _describe(self, image) -> Generation:
        return Generation(
            text=f"fake {image.width}x{image.height}", token_ids=(1, 2, 3),
            finish_reason="stop", prompt_tokens=7,
        )


def make_where_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return WhereEngine(settings, image_settings)


class BrokenCudaEngine(FakeEngine):
    """Loads, then fails its first batch as torch does once a kernel has corrupted the CUDA
    context (the message torch prints for an illegal memory access)."""

    def generate(self, images: Sequence, prompt, sampling) -> list[Generation]:
        raise RuntimeError(
            "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
            "asynchronously reported at some other API call, so the stacktrace below might be "
            "incorrect.")


def make_broken_cuda_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return BrokenCudaEngine(settings, image_settings)


def make_unloadable_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    """An engine whose package is missing, as vLLM's would be on a node without it."""
    raise ImportError("no module named 'vllm' (fake): install the gpu extra")


def record_event(event: str) -> None:
    """One line in the side log for this process (e.g. the driver marking a pause)."""
    _record(event, "")


def recording_worker(fn: Callable) -> Callable:
    """A ``mapInPandas`` function that logs each task's Python worker (event ``task``) and then
    runs ``fn``: which workers served an action."""
    return partial(_record_worker_then, fn=fn)


def _record_worker_then(frames: Iterator, fn: Callable) -> Iterator:
    _record("task", "worker")
    yield from fn(frames)


def read_pinning_log(path: str) -> list[dict]:
    """The records a run left in ``path`` (none when the file does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
