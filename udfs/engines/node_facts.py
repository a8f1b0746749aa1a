"""What one machine offers the engine, gathered on the driver and in a task on each executor
for the preflight (``candid doctor``, ``jobs/cluster/doctor.py`` judges the facts): versions,
GPUs and their driver, the compiler Triton needs, the model folder, the cache folder.

No CUDA context is created here (GPUs are read with nvidia-smi), so a Python worker that ran
this can still be pinned to its task's GPU afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sysconfig
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from udfs.engines.model_files import kv_bytes_per_token, local_model_revision, read_config
from udfs.engines.model_files import weight_bytes as folder_weight_bytes
from udfs.engines.versions import engine_versions
from udfs.engines.vllm_env import cache_root_candidates, writable_cache_root

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}
NVIDIA_SMI_QUERY = "index,name,memory.total,driver_version"


@dataclass
class Gpu:
    index: str
    name: str
    memory_mib: int
    driver: str


@dataclass
class NodeFacts:
    """One machine's answers. ``role`` is "driver" or "executor <id>"; ``gpus`` are the GPUs
    this process may use (its task's, on an executor)."""

    role: str
    host: str
    versions: dict[str, str]
    gpus: list[Gpu] = field(default_factory=list)
    nvidia_smi: bool = False
    torch_cuda: str | None = None
    compiler: str | None = None
    python_header: str | None = None
    model_readable: bool | None = None  # None: the model is a hub id
    model_revision: str | None = None
    weight_bytes: int | None = None
    kv_bytes_per_token: int | None = None
    cache_root: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NodeFacts:
        return cls(**{**data, "gpus": [Gpu(**gpu) for gpu in data.get("gpus", [])]})


def collect_node_facts(role: str, model: str, dtype: str = "auto") -> NodeFacts:
    """The facts of this process's machine for ``model`` (a folder or a hub id)."""
    facts = NodeFacts(role=role, host=socket.gethostname(), versions=engine_versions())
    facts.nvidia_smi, facts.gpus = _visible_gpus()
    facts.torch_cuda = _torch_cuda()
    facts.compiler = shutil.which("gcc") or shutil.which("cc")
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    facts.python_header = str(header) if header.is_file() else None
    facts.cache_root = writable_cache_root(
        cache_root_candidates(dict(os.environ), tempfile.gettempdir()))
    if Path(model).is_absolute():
        _read_model(facts, Path(model), _DTYPE_BYTES.get(dtype, 2))
    return facts


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """``nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader,
    nounits`` output -> one ``Gpu`` per line."""
    gpus = []
    for line in text.strip().splitlines():
        index, name, memory, driver = (part.strip() for part in line.split(","))
        gpus.append(Gpu(index=index, name=name, memory_mib=int(float(memory)), driver=driver))
    return gpus


def _visible_gpus() -> tuple[bool, list[Gpu]]:
    """(nvidia-smi found, the GPUs of CUDA_VISIBLE_DEVICES, or all of them when unset)."""
    if shutil.which("nvidia-smi") is None:
        return False, []
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return True, []
    gpus = parse_nvidia_smi(out)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        wanted = {part.strip() for part in visible.split(",")}
        gpus = [gpu for gpu in gpus if gpu.index in wanted]
    return True, gpus


def _torch_cuda() -> str | None:
    """The CUDA version torch was built for (None: a CPU build, or no torch)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.version.cuda


def _read_model(facts: NodeFacts, folder: Path, dtype_bytes: int) -> None:
    try:
        facts.model_revision = local_model_revision(folder)
        facts.weight_bytes = folder_weight_bytes(folder)
        facts.kv_bytes_per_token = kv_bytes_per_token(read_config(folder), dtype_bytes)
        facts.model_readable = True
    except (OSError, KeyError, ValueError):
        facts.model_readable = False


_verified: set[tuple[str, str | None]] = set()


def verify_model_here(model: str, revision: str | None) -> None:
    """The executor's side of the preflight, in the task before the engine loads: a model
    folder must be readable here with the revision the driver computed (a folder on a volume
    the executor does not mount would otherwise load nothing, or other weights). Raises
    ``WorkerFatalError`` (Spark retries the task elsewhere, then stops the job with this
    line); checked once per Python worker."""
    from udfs.engines.failures import WorkerFatalError
    from udfs.settings import LOCAL_REVISION_PREFIX

    if not Path(model).is_absolute() or (model, revision) in _verified:
        return
    try:
        found = local_model_revision(Path(model))
    except OSError as err:
        raise WorkerFatalError(f"model folder {model} is not readable on executor host "
                               f"{socket.gethostname()}: {err}") from err
    if revision is not None and revision.startswith(LOCAL_REVISION_PREFIX) and found != revision:
        raise WorkerFatalError(f"model folder {model} on executor host {socket.gethostname()} "
                               f"has revision {found}, the driver's has {revision}")
    _verified.add((model, revision))
