"""``candid doctor``: the preflight. Facts come from the driver and from one task per executor
slot (``udfs.engines.node_facts``); each check below is a pure function of those facts and the
config, and returns findings, one line each. A blocker makes ``candid doctor`` exit 2 and
``candid describe`` refuse to start.

``candid describe`` runs the driver checks (``driver_findings``) before Spark starts; the
executor side runs inside each task before the engine loads (``udfs.runner.spark_udf``): the
model folder readable with the driver's revision, a writable cache folder.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jobs.cluster.gpu_layout import engine_stage_profile, session_engine_slots
from jobs.config import DescribeConfig
from udfs.engines.node_facts import NodeFacts, collect_node_facts
from udfs.settings import EngineSettings

OK, WARNING, BLOCKER, NOT_APPLICABLE = "ok", "warning", "BLOCKER", "n/a"
EXIT_BLOCKER = 2
# Minimum Linux driver of each CUDA toolkit (NVIDIA's CUDA toolkit release notes, "CUDA Toolkit
# and Corresponding Driver Versions"): the CUDA a torch wheel was built with needs at least it.
MIN_DRIVER = {"13.0": "580.65.06", "12.9": "575.51.03", "12.8": "570.26", "12.6": "560.28.03",
              "12.4": "550.54.14", "12.1": "530.30.02"}
# CUDA context, activations and CUDA graphs beside weights and KV cache (a planning figure).
RUNTIME_OVERHEAD_BYTES = 2 << 30
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
VERSION_KEYS = ("python", "candid-vlm", "vllm", "torch", "transformers")


@dataclass(frozen=True)
class Finding:
    level: str
    check: str
    text: str

    def line(self) -> str:
        return f"[{self.level}] {self.check}: {self.text}"


def check_versions(driver: NodeFacts, executors: Sequence[NodeFacts]) -> list[Finding]:
    """The same Python, Candid, vLLM, torch and transformers on the driver and every executor."""
    found = []
    for executor in executors:
        differ = [f"{key} {driver.versions.get(key)} on the driver, "
                  f"{executor.versions.get(key)} on {executor.role} ({executor.host})"
                  for key in VERSION_KEYS if executor.versions.get(key) != driver.versions.get(key)]
        if differ:
            found.append(Finding(BLOCKER, "versions", "; ".join(differ)))
    if not found:
        same = ", ".join(f"{key} {driver.versions.get(key)}" for key in VERSION_KEYS)
        found.append(Finding(OK, "versions", f"{same} on the driver and {len(executors)} "
                             "executor task(s)"))
    return found


def check_cuda(executors: Sequence[NodeFacts]) -> list[Finding]:
    """CUDA usable on every executor, its NVIDIA driver new enough for torch's CUDA build."""
    if not any(e.gpus or e.nvidia_smi for e in executors):
        return [Finding(NOT_APPLICABLE, "cuda", "no GPU on any executor (no nvidia-smi): CUDA, "
                        "driver version, GPU memory and compiler checks do not apply")]
    found = []
    for e in executors:
        where = f"{e.role} ({e.host})"
        if not e.gpus:
            found.append(Finding(BLOCKER, "cuda", f"{where}: nvidia-smi lists no GPU for the task"))
        elif e.torch_cuda is None:
            found.append(Finding(BLOCKER, "cuda", f"{where}: torch is a CPU build; install the "
                                 "`gpu` extra's CUDA torch"))
        elif not driver_is_new_enough(e.gpus[0].driver, e.torch_cuda):
            found.append(Finding(BLOCKER, "cuda", f"{where}: NVIDIA driver {e.gpus[0].driver} is "
                                 f"older than {MIN_DRIVER.get(_major_minor(e.torch_cuda), '?')}, "
                                 f"which torch's CUDA {e.torch_cuda} needs (docs/CLUSTER.md)"))
        else:
            found.append(Finding(OK, "cuda", f"{where}: GPU {e.gpus[0].index} {e.gpus[0].name}, "
                                 f"driver {e.gpus[0].driver}, torch CUDA {e.torch_cuda}"))
    return found


def driver_is_new_enough(driver: str, cuda: str) -> bool:
    """True when NVIDIA driver ``driver`` runs CUDA ``cuda`` (unknown CUDA: False)."""
    needed = MIN_DRIVER.get(_major_minor(cuda))
    return needed is not None and _numbers(driver) >= _numbers(needed)


def check_gpu_memory(executors: Sequence[NodeFacts], engine: EngineSettings) -> list[Finding]:
    """The task's GPU holds the weights, the configured KV cache (at least one sequence of
    ``max_model_len``) and ``RUNTIME_OVERHEAD_BYTES``, within ``gpu_memory_utilization``."""
    vllm = engine.vllm_settings
    found = []
    for e in (e for e in executors if e.gpus):
        if e.weight_bytes is None or e.kv_bytes_per_token is None:
            found.append(Finding(NOT_APPLICABLE, "gpu memory", f"{e.role}: the model is not a "
                                 "readable folder, its size is unknown"))
            continue
        budget = e.gpus[0].memory_mib * (1 << 20) * vllm.gpu_memory_utilization
        kv_needed = vllm.kv_cache_memory_bytes or e.kv_bytes_per_token * vllm.max_model_len
        needed = e.weight_bytes + kv_needed + RUNTIME_OVERHEAD_BYTES
        text = (f"{e.role}: {_gib(needed)} needed (weights {_gib(e.weight_bytes)}, KV cache "
                f"{_gib(kv_needed)}, runtime {_gib(RUNTIME_OVERHEAD_BYTES)}) of {_gib(budget)} "
                f"usable ({vllm.gpu_memory_utilization:.2f} of {e.gpus[0].name})")
        found.append(Finding(BLOCKER if needed > budget else OK, "gpu memory", text))
    return found


def check_compiler(executors: Sequence[NodeFacts]) -> list[Finding]:
    """gcc and Python.h on every GPU executor: Triton compiles a C launcher at run time."""
    found = []
    for e in (e for e in executors if e.gpus):
        missing = [name for name, value in (("gcc", e.compiler), ("Python.h", e.python_header))
                   if value is None]
        level = BLOCKER if missing else OK
        text = (f"{e.role} ({e.host}): missing {' and '.join(missing)} (install gcc and the "
                "python3-dev package)") if missing else f"{e.role}: {e.compiler}, {e.python_header}"
        found.append(Finding(level, "compiler", text))
    return found


def check_model(engine: EngineSettings, driver: NodeFacts,
                executors: Sequence[NodeFacts]) -> list[Finding]:
    """A folder: readable everywhere with the driver's revision. A hub id: a pinned commit."""
    if not Path(engine.model).is_absolute():
        if engine.revision is None:
            return [Finding(BLOCKER, "model", f"hub model {engine.model} has no engine.revision: "
                            "each executor would download whatever is newest; pin a commit")]
        level = OK if _COMMIT.match(engine.revision) else BLOCKER
        return [Finding(level, "model", f"hub model {engine.model} at revision "
                        f"{engine.revision}" + ("" if level == OK else
                                                " (a branch or tag can move; pin a commit)"))]
    if not driver.model_readable:
        return [Finding(BLOCKER, "model", f"model folder {engine.model} is not readable on "
                        "the driver")]
    found = []
    for e in executors:
        if not e.model_readable:
            found.append(Finding(BLOCKER, "model", f"{e.role} ({e.host}) cannot read "
                                 f"{engine.model}: put the weights where every node mounts them"))
        elif e.model_revision != driver.model_revision:
            found.append(Finding(BLOCKER, "model", f"{e.role} ({e.host}) has revision "
                                 f"{e.model_revision}, the driver {driver.model_revision}"))
    return found or [Finding(OK, "model", f"{engine.model} revision {driver.model_revision} "
                             "on the driver and every executor task")]


def check_caches(nodes: Sequence[NodeFacts]) -> list[Finding]:
    """A writable local folder for vLLM's, Triton's and Hugging Face's caches on every node."""
    blocked = [f"{n.role} ({n.host})" for n in nodes if n.cache_root is None]
    if blocked:
        return [Finding(BLOCKER, "caches", f"no writable cache folder on {', '.join(blocked)}: "
                        "set CANDID_EXECUTOR_CACHE or SPARK_LOCAL_DIRS")]
    roots = sorted({n.cache_root for n in nodes})
    return [Finding(OK, "caches", f"writable: {', '.join(roots)}")]


def check_mlflow(config: DescribeConfig,
                 reach: Callable[[str], str | None] | None = None) -> list[Finding]:
    """The tracking store reachable from the driver (executors never log)."""
    tracking = config.mlflow
    if not tracking.enabled:
        return [Finding(NOT_APPLICABLE, "mlflow", "tracking is off (mlflow.enabled: false)")]
    uri = tracking.tracking_uri
    if uri.startswith("sqlite:///") or "://" not in uri:
        path = Path(uri.removeprefix("sqlite:///")).resolve()
        folder = path.parent
        ok = folder.is_dir() or not folder.exists()
        return [Finding(OK if ok else BLOCKER, "mlflow", f"local store {path}"
                        + ("" if ok else ": its folder is not a folder"))]
    if uri.startswith(("http://", "https://")):
        problem = (reach or _http_problem)(uri)
        if problem is None:
            return [Finding(OK, "mlflow", f"{uri} answered")]
        # mlflow.on_error: warn says results matter more than their tracking.
        level = BLOCKER if tracking.on_error == "fail" else WARNING
        return [Finding(level, "mlflow", f"{uri}: {problem} (mlflow.on_error: "
                        f"{tracking.on_error})")]
    return [Finding(NOT_APPLICABLE, "mlflow", f"{uri}: not checked from here (credentials "
                    "come from the workspace)")]


def _http_problem(uri: str) -> str | None:
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5):
            return None
    except (urllib.error.URLError, OSError) as err:
        return f"not reachable ({err})"


def driver_findings(config: DescribeConfig, driver: NodeFacts) -> list[Finding]:
    """What the driver alone can check, before Spark starts."""
    return [*check_model(config.engine, driver, []), *check_caches([driver]),
            *check_mlflow(config)]


def all_findings(config: DescribeConfig, driver: NodeFacts,
                 executors: Sequence[NodeFacts]) -> list[Finding]:
    """Every check, driver and executors."""
    return [*check_versions(driver, executors), *check_cuda(executors),
            *check_gpu_memory(executors, config.engine), *check_compiler(executors),
            *check_model(config.engine, driver, executors), *check_caches([driver, *executors]),
            *check_mlflow(config)]


def driver_facts(config: DescribeConfig) -> NodeFacts:
    return collect_node_facts("driver", config.engine.model, config.engine.dtype)


def executor_facts(spark, config: DescribeConfig) -> list[NodeFacts]:
    """Facts from one task per engine slot (one per GPU, so the scheduler spreads them over
    every executor), each asking for a GPU as the engine stage does and pinned to it first."""
    model, dtype = config.engine.model, config.engine.dtype
    slots = session_engine_slots(spark)

    def probe(_rows):
        from pyspark import TaskContext

        from udfs.engines.gpu import pin_task_gpus
        from udfs.engines.vllm_env import prepare_executor_env

        prepare_executor_env(model)
        pin_task_gpus()
        context = TaskContext.get()
        role = f"executor task {context.partitionId() if context else '?'}"
        yield collect_node_facts(role, model, dtype).to_dict()

    tasks = spark.sparkContext.parallelize(range(slots), slots)
    profile = engine_stage_profile(spark)
    if profile is not None:
        tasks = tasks.withResources(profile)
    rows = tasks.mapPartitions(probe).collect()
    return [NodeFacts.from_dict(row) for row in rows]


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _gib(value: float) -> str:
    return f"{value / (1 << 30):.1f} GiB"
