"""A Spark standalone cluster on this machine for the multi-executor tests: one master and one
worker started with the venv's ``spark-class``, the worker declaring fake GPUs.

The worker finds its GPUs with the project's own discovery script
(``conf/spark/getGpusResources.sh``), which calls ``nvidia-smi``; a fake ``nvidia-smi`` first on
the worker's PATH lists the GPU indices the test asks for. The worker hands each executor its
share of them (``--resourcesFile``), and Spark assigns them to tasks exactly as on GPU nodes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DISCOVERY_SCRIPT = REPO / "conf" / "spark" / "getGpusResources.sh"
START_TIMEOUT_S = 120
# Compared between a cluster run and an in-process run: everything but when and by which run.
COMPARED = ("image_id", "status", "description", "finish_reason", "prompt_tokens",
            "completion_tokens", "guardrail_flags", "prompt_hash", "run_fingerprint",
            "orig_width", "orig_height", "visual_tokens", "attempts")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spark_home() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without PYTHONPATH (the cluster must not find the repository
    through it) and with Spark's home; ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON",
                                                            "PYSPARK_DRIVER_PYTHON")}
    env["SPARK_HOME"] = spark_home()
    return {**env, **extra}


@dataclass
class StandaloneCluster:
    """A running master and worker; ``stop()`` ends both (the worker ends its executors)."""

    url: str
    root: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}"
                         for p in self.logs if p.exists())

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def _start(cluster: StandaloneCluster, name: str, args: list[str], env: dict[str, str],
           ready: str) -> None:
    log = cluster.root / f"{name}.log"
    spark_class = Path(sys.executable).with_name("spark-class")
    with log.open("wb") as out:
        process = subprocess.Popen([str(spark_class), *args], stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=cluster.root)
    cluster.processes.append(process)
    cluster.logs.append(log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while ready not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError(f"the standalone {name} did not start:\n{cluster.log_tail()}")
        time.sleep(0.5)


def start_cluster(root: Path, gpus: list[str], cores: int, memory: str) -> StandaloneCluster:
    """Start a master and one worker with ``cores``, ``memory`` and fake GPUs ``gpus``."""
    root.mkdir(parents=True, exist_ok=True)
    fake_bin = root / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    smi = fake_bin / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + "".join(f"echo {gpu}\n" for gpu in gpus))
    smi.chmod(0o755)
    port = free_port()
    cluster = StandaloneCluster(url=f"spark://127.0.0.1:{port}", root=root)
    daemon = {"SPARK_DAEMON_MEMORY": "384m", "SPARK_LOCAL_IP": "127.0.0.1"}
    _start(cluster, "master", [
        "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
        "--webui-port", str(free_port()),
    ], clean_env(**daemon), ready="I have been elected leader")
    worker_opts = (f"-Dspark.worker.resource.gpu.amount={len(gpus)} "
                   f"-Dspark.worker.resource.gpu.discoveryScript={DISCOVERY_SCRIPT}")
    _start(cluster, "worker", [
        "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", str(cores),
        "--memory", memory, "--work-dir", str(root / "work"), "--webui-port", str(free_port()),
        cluster.url,
    ], clean_env(**daemon, SPARK_WORKER_OPTS=worker_opts,
                 PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}"),
        ready="Successfully registered with master")
    return cluster


def submit_describe(config: Path, *extra: str, py_files: Path | None = None,
                    env: dict[str, str] | None = None, timeout: float = 420,
                    job: Path = REPO / "tests" / "cluster_job.py"):
    """``spark-submit $(candid submit-args --config config) extra... JOB describe --config
    config``; returns the submit-args and the finished process. ``job``: by default
    ``tests/cluster_job.py`` (the fake engine of ``tests.cluster_fakes`` injected), or
    ``jobs/cli.py`` for the real engine. ``env``: the driver's environment on top of
    ``clean_env()``."""
    base = clean_env(**(env or {}))
    args = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "submit-args", "--config", str(config)],
        cwd=REPO, env={**base, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        check=True,
    ).stdout.split()
    submit = Path(sys.executable).with_name("spark-submit")
    shipped = ["--py-files", str(py_files)] if py_files is not None else []
    done = subprocess.run(
        [str(submit), *args, *extra, *shipped, str(job), "describe", "--config", str(config)],
        cwd=REPO, env=base, capture_output=True, text=True, timeout=timeout,
    )
    return args, done


def table_rows(spark, table: str) -> list[tuple]:
    """The ``COMPARED`` columns of a results table, by image id."""
    from jobs.tables.delta_io import read_table

    frame = read_table(spark, table).select(*COMPARED).orderBy("image_id")
    return [tuple(row) for row in frame.collect()]
