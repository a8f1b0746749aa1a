"""Fakes and helpers for the resilience tests (kills, task retries, concurrent writers, MLflow
outages). Executors import this module by name (the engine factories below, injected through
``make_engine`` or, for CLI runs, ``tests.fake_candid``).

A fake's behaviour is encoded in ``EngineSettings.model`` as ``key=value;key=value`` (a free
string for fakes); set ``engine.model_id`` to a fixed name so that result keys do not depend on
it. Cross-process state (which worker already failed) lives in marker files: Spark retries a
failed task in a fresh Python worker, so nothing in memory survives.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from jobs.config_loader import config_data
from tests.fakes import FakeEngine
from tests.mlflow_store import fresh_store
from tests.small_spark import SMALL_DATA_CONFS
from udfs.engines.base import Engine, EngineDeadError, Generation
from udfs.settings import EngineSettings, ImageSettings

REPO = Path(__file__).resolve().parents[1]
LOCAL_PROFILE = REPO / "conf" / "spark" / "local.yaml"
PROMPT_DIR = REPO / "conf" / "prompts"
BARRIER_TIMEOUT_S = 120.0


def engine_params(model: str) -> dict[str, str]:
    """``"sleep=0.5;barrier=/tmp/b"`` -> ``{"sleep": "0.5", "barrier": "/tmp/b"}``."""
    pairs = (item.partition("=") for item in model.split(";") if item.strip())
    return {key.strip(): value.strip() for key, _, value in pairs}


def engine_model(**params: Any) -> str:
    """The ``engine.model`` string for ``engine_params``."""
    return ";".join(f"{key}={value}" for key, value in params.items())


def claim(marker: Path, content: str = "") -> bool:
    """Create ``marker`` atomically; True for exactly one caller across all processes."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return True


class ScriptedEngine(FakeEngine):
    """A ``FakeEngine`` whose generate calls can be slowed down (``sleep`` seconds per call) and
    whose first call is held at a cross-process barrier (``barrier`` folder, ``parties`` runs,
    ``name`` of this run) so that concurrent jobs reach their engine phase, and so their
    commits, at the same time. A party that never comes costs the others one timeout, once.
    With ``hold_after_merge`` (a table path) and ``release`` (a file), calls after the table's
    first MERGE wait for the release. Once the ``release`` file exists, calls no longer sleep
    either: a rerun with the same config (the same fingerprint) runs at full speed."""

    def __init__(self, settings: EngineSettings, image_settings: ImageSettings):
        super().__init__(settings, image_settings)
        self.params = engine_params(settings.model)
        self.calls = 0

    def generate(self, images, prompt, sampling) -> list[Generation]:
        self.calls += 1
        if "barrier" in self.params and self.calls == 1:  # only the first: a missing party
            self._wait_at_barrier(Path(self.params["barrier"]))
        if "hold_after_merge" in self.params:
            self._hold_after_merge(Path(self.params["hold_after_merge"]))
        if not ("release" in self.params and Path(self.params["release"]).exists()):
            time.sleep(float(self.params.get("sleep", 0)))
        return super().generate(images, prompt, sampling)

    def _hold_after_merge(self, table: Path) -> None:
        """Once ``table`` has a MERGE commit, wait until the ``release`` file exists: a run
        held here has committed a chunk and cannot finish, whatever the machine's speed."""
        release = Path(self.params["release"])
        deadline = time.monotonic() + BARRIER_TIMEOUT_S
        while merge_committed(table) and not release.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _wait_at_barrier(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.params.get("name", "run")).touch()
        parties = int(self.params.get("parties", 2))
        deadline = time.monotonic() + BARRIER_TIMEOUT_S
        while len(list(folder.iterdir())) < parties and time.monotonic() < deadline:
            time.sleep(0.1)


def merge_committed(table: Path) -> bool:
    """Whether the Delta table at ``table`` has a committed MERGE (read from its log files)."""
    for commit in sorted((table / "_delta_log").glob("*.json")):
        try:
            actions = [json.loads(line) for line in commit.read_text().splitlines() if line]
        except (OSError, ValueError):
            continue  # not fully visible yet
        if any(a.get("commitInfo", {}).get("operation") == "MERGE" for a in actions):
            return True
    return False


class FailsTaskOnceEngine(ScriptedEngine):
    """Fails one Spark task once, after it has already produced output.

    The first engine (across all processes) to reach its *second* generate call claims
    ``markers/first`` and dies; the engine rebuilt in the same worker claims ``markers/second``
    and dies too, so the feeding loop (``udfs.runner.feeding``) fails the task ("engine failed
    fatally twice in a row"). Spark retries the task in a fresh worker, where both markers exist.
    """

    def generate(self, images, prompt, sampling) -> list[Generation]:
        markers = Path(self.params["markers"])
        pid = str(os.getpid())
        if self.calls >= 1 and claim(markers / "first", pid):
            raise EngineDeadError("fake engine died after its first batch")
        first = markers / "first"
        if first.exists() and first.read_text() == pid and claim(markers / "second", pid):
            raise EngineDeadError("rebuilt fake engine died at once")
        return super().generate(images, prompt, sampling)


# What torch raises when a kernel faults (c10/cuda/CUDAException.cpp), verbatim.
CUDA_ILLEGAL_ACCESS = (
    "CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1"
)


class CudaBrokenEngine(ScriptedEngine):
    """Every generate call raises torch's ``AcceleratorError`` for an illegal memory access,
    as a GPU with a broken CUDA context does. Each build leaves ``builds/<pid>-<n>`` so a test
    can count the task's attempts (Spark retries a failed task in a fresh Python worker)."""

    def __init__(self, settings: EngineSettings, image_settings: ImageSettings):
        super().__init__(settings, image_settings)
        folder = Path(self.params["builds"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{os.getpid()}-{len(list(folder.iterdir()))}").touch()

    def generate(self, images, prompt, sampling) -> list[Generation]:
        import torch

        raise torch.AcceleratorError(CUDA_ILLEGAL_ACCESS)


def make_cuda_broken_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return CudaBrokenEngine(settings, image_settings)


def make_scripted_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return ScriptedEngine(settings, image_settings)


def make_fails_task_once_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return FailsTaskOnceEngine(settings, image_settings)


# --- job configs and CLI runs shared by the subprocess tests ----------------------------------

# Next to a job YAML: the test engine ("module:function") that CLI runs of it inject. User
# configs have no engine seam; tests inject through tests.fake_candid (see candid_command).
ENGINE_SIDECAR_SUFFIX = ".engine"
DEFAULT_TEST_ENGINE = "tests.resilience_fakes:make_scripted_engine"


def write_job_config(tmp: Path, name: str = "job.yaml", **overrides: Any) -> Path:
    """A describe YAML (the structure of conf/demo.yaml) with everything inside ``tmp``.

    ``overrides`` use ``a__b=value`` for nested keys, like ``tests.conftest.describe_config``;
    ``engine_factory`` names the test engine, recorded beside the YAML (``engine_for_config``).
    """
    engine = overrides.pop("engine_factory", DEFAULT_TEST_ENGINE)
    data: dict[str, Any] = {
        "input_table": str(tmp / "images"),
        "results_table": str(tmp / "results"),
        "engine": {"backend": "vllm", "model": "sleep=0", "model_id": "fake/resilience"},
        "images": {"max_pixels": 200704},
        "prompt": {"version": "v2", "dir": str(PROMPT_DIR)},
        "batch_size": 4,
        "chunk_size": 1000,
        "spark": {
            "profile": str(LOCAL_PROFILE),
            "conf": {
                **SMALL_DATA_CONFS,
                "spark.sql.warehouse.dir": str(tmp / "warehouse"),
                "spark.driver.extraJavaOptions": f"-Dderby.system.home={tmp / 'derby'}",
            },
        },
        "mlflow": {
            "enabled": False,
            "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
            "artifact_location": str(tmp / "mlartifacts"),
            "experiment": "candid-resilience",
            "sample_rows": 3,
        },
    }
    path = tmp / name
    merged = config_data(data, **overrides)  # as load_config merges, before validation
    tracking = merged["mlflow"]
    if tracking.get("enabled") and tracking["tracking_uri"] == data["mlflow"]["tracking_uri"]:
        fresh_store(tmp)  # a migrated store, copied (tests.mlflow_store)
    path.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
    Path(str(path) + ENGINE_SIDECAR_SUFFIX).write_text(engine, encoding="utf-8")
    return path


def engine_for_config(config_file: Path | str) -> Callable[..., Engine]:
    """The engine factory ``write_job_config`` recorded for ``config_file``, for in-process
    runs: ``run_describe(config, spark, make_engine=engine_for_config(path))``."""
    module, _, name = Path(str(config_file) + ENGINE_SIDECAR_SUFFIX).read_text().partition(":")
    return getattr(importlib.import_module(module), name)


def _recorded_engine(args: Sequence[str]) -> str | None:
    """The test engine recorded beside the ``--config`` file in ``args``, if any."""
    for flag, value in zip(args, args[1:], strict=False):
        sidecar = Path(str(value) + ENGINE_SIDECAR_SUFFIX)
        if flag == "--config" and sidecar.is_file():
            return sidecar.read_text(encoding="utf-8").strip()
    return None


def candid_env(**extra: str) -> dict[str, str]:
    """The environment for a ``candid`` subprocess: executors must import ``tests.*``. Its
    JVMs inherit the class archive and the quick JIT tier through ``JAVA_TOOL_OPTIONS``
    (``tests.jvm_archive``, set by tests/conftest.py)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    return env


def candid_command(*args: str) -> list[str]:
    """``candid ARGS``; with the test engine recorded for its ``--config``, if there is one."""
    engine = _recorded_engine(args)
    if engine is None:
        return [sys.executable, "-m", "jobs.cli", *args]
    return [sys.executable, "-m", "tests.fake_candid", "--engine", engine, *args]


def start_candid(
    args: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``candid ARGS`` in its own session (so the whole tree can be killed), stdout and
    stderr both into ``log``."""
    handle = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed by the child's exit
    try:
        return subprocess.Popen(
            candid_command(*args), cwd=REPO, env=env or candid_env(), stdout=handle,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    finally:
        handle.close()


def wait_for_all(procs: dict[str, subprocess.Popen], logs: dict[str, Path], timeout: float) -> None:
    """Wait for every process; past ``timeout`` kill every process tree and fail with the tail
    of each one's log, so a hung run says where it hung."""
    deadline = time.monotonic() + timeout
    try:
        for proc in procs.values():
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        tails = "\n".join(
            f"--- {name} (exit {procs[name].returncode}):\n{log_tail(path)}"
            for name, path in logs.items()
        )
        raise AssertionError(f"runs still going after {timeout:.0f}s:\n{tails}") from None


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` of a run's log, without Ivy's dependency report."""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = [line for line in text if not line.startswith(("\t", ":: "))]
    return "\n".join(kept[-lines:])


def run_candid(
    args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 420
) -> subprocess.CompletedProcess:
    """Run ``candid ARGS`` to completion, capturing stdout and stderr separately."""
    return subprocess.run(
        candid_command(*args), cwd=REPO, env=env or candid_env(), capture_output=True,
        text=True, timeout=timeout,
    )


def session_processes(session_id: int) -> list[tuple[int, str, str]]:
    """(pid, state, command line) of every live process in session ``session_id``: a killed
    tree's stragglers keep their session even when they are re-parented."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # Fields after the ")" that ends the command name: state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == session_id and fields[0] != "Z":
            found.append((int(entry.name), fields[0], cmdline.strip()))
    return found


def held_until(started: Path, released: Path, limit_s: float = 60.0) -> Callable[[str], str]:
    """An identity function for a Spark UDF that marks ``started`` and then waits (at most
    ``limit_s``) for ``released`` to exist: it holds a Delta command whose source it is in flight
    while the test writes to the same table from the driver."""

    def hold(value: str) -> str:
        started.touch()
        deadline = time.monotonic() + limit_s
        while not released.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return value

    return hold
