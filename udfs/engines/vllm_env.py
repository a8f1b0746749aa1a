"""The process environment vLLM needs in Candid, in one place: the CLI sets it before Spark
starts (local executors inherit it), the engine sets it again before ``import vllm`` (a cluster's
Python workers), and the Spark profiles pass it as ``spark.executorEnv.*``."""

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
