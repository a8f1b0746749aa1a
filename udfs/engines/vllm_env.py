"""The process environment vLLM needs in Candid, in one place: the CLI sets it before Spark
starts (local executors inherit it), the engine sets it again before ``import vllm`` (a cluster's
Python workers), and the Spark profiles pass it as ``spark.executorEnv.*``. On executors,
``prepare_executor_env`` runs in the task before the engine loads: caches in a writable local
folder, GPUs numbered like nvidia-smi, the Hub offline for a local model folder."""

from __future__ import annotations

import os
from pathlib import Path

# The engine runs inside the Python worker: no child processes to outlive a killed worker, and
# a start several times faster. No usage reports leave the cluster.
VLLM_PROCESS_ENV: dict[str, str] = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_NO_USAGE_STATS": "1",
}


def apply_vllm_env(overwrite: bool = False) -> None:
    """Set ``VLLM_PROCESS_ENV`` in this process. ``overwrite=False`` lets a cluster's own
    environment win; the engine overwrites, since in-process mode is what it is built for."""
    for key, value in VLLM_PROCESS_ENV.items():
        if overwrite:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)


def prepare_process_env(build_dir: str = "build") -> None:
    """Process-level settings for vLLM and its caches, before Spark starts (executors in local
    mode inherit them). ``setdefault``: a cluster's own environment wins."""
    apply_vllm_env()
    root = Path(build_dir).resolve()
    defaults = {
        "VLLM_CACHE_ROOT": str(root / "cache" / "vllm"),
        "TRITON_CACHE_DIR": str(root / "cache" / "triton"),
        "TORCHINDUCTOR_CACHE_DIR": str(root / "cache" / "inductor"),
        "MLFLOW_ENABLE_TELEMETRY": "false",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


# Where an executor may write its caches, in order: Candid's own setting, then the folders the
# cluster manager gives the executor for scratch (YARN: LOCAL_DIRS; standalone and Kubernetes:
# SPARK_LOCAL_DIRS), then the system's temporary folder.
CACHE_ROOT_VARIABLES = ("CANDID_EXECUTOR_CACHE", "SPARK_LOCAL_DIRS", "LOCAL_DIRS")
CACHE_FOLDER = "candid-cache"
# CUDA numbers GPUs fastest first by default; nvidia-smi, and so Spark's discovery script,
# numbers them by PCI bus. Without this, Spark's GPU 3 can be another card for CUDA.
GPU_ORDER_ENV = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
# The Hugging Face libraries never reach for the hub when the model is a local folder: a typo
# in a file name fails at once instead of hanging on a network executors do not have.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def cache_root_candidates(environ: dict[str, str], temp_dir: str) -> list[str]:
    """Folders for an executor's caches, best first (``CACHE_ROOT_VARIABLES``; a variable may
    list several comma-separated folders), each with ``candid-cache`` appended."""
    roots = []
    for variable in CACHE_ROOT_VARIABLES:
        roots += [part for part in environ.get(variable, "").split(",") if part.strip()]
    roots.append(temp_dir)
    return [str(Path(root.strip()) / CACHE_FOLDER) for root in roots]


def cache_env(root: str) -> dict[str, str]:
    """vLLM's, Triton's, torch.compile's and Hugging Face's caches under ``root``."""
    base = Path(root)
    return {
        "VLLM_CACHE_ROOT": str(base / "vllm"),
        "TRITON_CACHE_DIR": str(base / "triton"),
        "TORCHINDUCTOR_CACHE_DIR": str(base / "inductor"),
        "HF_HOME": str(base / "huggingface"),
    }


def executor_env(model: str, cache_root: str) -> dict[str, str]:
    """Everything an executor's process needs before the engine loads: vLLM in-process, GPUs
    numbered like nvidia-smi, caches in ``cache_root`` and, for a model given as a folder (an
    absolute path: the settings resolve local folders), the Hub offline."""
    env = {**VLLM_PROCESS_ENV, **GPU_ORDER_ENV, **cache_env(cache_root)}
    if Path(model).is_absolute():
        env.update(OFFLINE_ENV)
    return env


def writable_cache_root(candidates: list[str]) -> str | None:
    """The first candidate folder that can be created and written to, or None."""
    for candidate in candidates:
        try:
            Path(candidate).mkdir(parents=True, exist_ok=True)
            probe = Path(candidate) / f".write-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError:
            continue
        return candidate
    return None


def prepare_executor_env(model: str) -> dict[str, str]:
    """Set ``executor_env`` in this process (an executor's Python worker, before the engine or
    CUDA loads). The cluster's own settings win (``spark.executorEnv.*``), except the GPU order,
    which must match Spark's GPU addresses. Returns what was set."""
    import tempfile

    root = writable_cache_root(cache_root_candidates(dict(os.environ), tempfile.gettempdir()))
    wanted = executor_env(model, root) if root else {
        **VLLM_PROCESS_ENV, **GPU_ORDER_ENV,
        **(OFFLINE_ENV if Path(model).is_absolute() else {}),
    }
    applied = {}
    for key, value in wanted.items():
        if key in GPU_ORDER_ENV or key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    return applied
