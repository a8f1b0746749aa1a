"""Benchmark: fleet utilization of a describe run on a multi-executor Spark, chunks pipelined
or not.

A standalone master and worker on this machine (``tests.standalone``), ``--engines`` executors
with one (fake) GPU and one core each, found by the project's discovery script. Each executor's
engine is simulated (``benchmarks.fleet_engine``): fixed concurrency, fixed service time,
served by sleeping, so the engines cost no CPU; the engine on the last GPU is ``--slow`` times
slower. ``--chunks`` chunks with commits and write-back, once with ``pipeline_chunks: false``
and once with ``true``, on fresh tables, in the same run.

Reported per mode: fleet utilization = engine-busy seconds / (engines x wall time from the
first request to the last result), busy being slot-time / capacity; engine builds per GPU; the
tail share (time with fewer than all engines busy); the run's wall time; a profile of
the engine-seconds not busy: with every engine idle (the GPUs wait for the driver), with some
idle (a chunk's tail, a slow GPU), with free slots (a task's ramp-up and drain); and a
timeline (``benchmarks.fleet_timeline``): per chunk, each engine's span beside the driver's
engine stage job, commit and write-back, and every moment all engines waited, with the
driver steps running then.

Run: ``.venv/bin/python benchmarks/bench_fleet.py [--quick]`` (writes
``benchmarks/results/fleet.json``; the last line is ``fleet utilization X``, pipelined).
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402 - after the thread settings above, on purpose
import importlib  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing

from benchmarks.bench_scale import Params, make_corpus  # noqa: E402
from benchmarks.fleet_engine import fleet_figures, fleet_model, read_records  # noqa: E402
from benchmarks.fleet_timeline import chunk_timeline  # noqa: E402
from benchmarks.scale_probes import StepTimer  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "fleet.json"
GPU_PROFILE = REPO / "conf" / "spark" / "gpu-cluster.yaml"
# The driver's steps per chunk, timed for the timeline: (step, module, function, chunk number).
DRIVER_STEPS = (
    ("stage", "jobs.describe.chunks", "stage_chunk", lambda args: args[3]),
    ("commit", "jobs.describe.chunks", "commit_staged", lambda args: args[3]),
    ("write_back", "jobs.describe.run", "write_back_chunk", lambda args: args[2].index),
)


# Which tasks take a GPU (jobs/cluster/gpu_layout.py): only the engine stage's, with a spare
# core per executor for commits (the shipped profile's way), or every task
# (spark.task.resource.gpu.amount=1, one core per executor: what the profile did before).
PER_STAGE = {"spark.executor.cores": "2", "spark.candid.engine.taskCpus": "1"}
LAYOUTS = {
    "per-stage": PER_STAGE,
    "session-wide": {**PER_STAGE, "spark.executor.cores": "1",
                     "spark.task.resource.gpu.amount": "1"},
    # per-stage, and no delay scheduling: an engine task goes to the first free GPU rather than
    # waiting up to spark.locality.wait (3 s) for the executor that holds its shuffle input.
    "per-stage-no-wait": {**PER_STAGE, "spark.locality.wait": "0s"},
}


def start_spark(url: str, engines: int, workdir: Path, layout: str):
    from jobs.cluster.spark_session import build_spark
    from jobs.config import SparkSettings
    from tests.standalone import DISCOVERY_SCRIPT
    from udfs.engines.vllm_env import prepare_process_env

    prepare_process_env(str(REPO / "build"))
    return build_spark(SparkSettings(
        profile=str(GPU_PROFILE), master=url, app_name="candid-bench-fleet",
        ivy_home=str(REPO / "build" / "ivy"),
        conf={
            **LAYOUTS[layout], "spark.task.cpus": "1",
            "spark.cores.max": str(engines * int(LAYOUTS[layout]["spark.executor.cores"])),
            "spark.executor.memory": "512m", "spark.executor.memoryOverhead": "384m",
            "spark.executor.resource.gpu.discoveryScript": str(DISCOVERY_SCRIPT),
            "spark.driver.memory": "2g", "spark.sql.shuffle.partitions": str(engines),
            "spark.default.parallelism": str(engines), "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.warehouse.dir": str(workdir / "warehouse"),
            "spark.pyspark.python": sys.executable,
            # The executors import benchmarks.fleet_engine and the project from the repository.
            "spark.executorEnv.PYTHONPATH": str(REPO),
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
        },
    ), log_file=workdir / "spark.log")


def describe_config(args, tables: Path, mode: str, log_dir: Path):
    from jobs.config import DescribeConfig, load_config

    return load_config(DescribeConfig, {
        "input_table": str(tables / f"images_{mode}"),
        "results_table": str(tables / f"results_{mode}"),
        "engine": {"backend": "vllm", "model": fleet_model(
            log_dir=log_dir, capacity=args.capacity, service_s=args.service_s,
            slow_gpu=args.engines - 1, slow=args.slow), "model_id": "bench/fleet"},
        "images": {"max_pixels": 200704},
        "prompt": {"version": "v2", "dir": str(REPO / "conf" / "prompts")},
        "batch_size": args.capacity,
        "chunk_size": args.rows // args.chunks,
        "tasks_per_slot": args.tasks_per_slot,
        "pipeline_chunks": mode.endswith("on"),
        "source_column": {"enabled": True, "every_chunk": "always"},
        "mlflow": {"enabled": False},
    })


def run_mode(spark, args, corpus_manifest: Path, workdir: Path, layout: str,
             mode: str) -> dict[str, Any]:
    from jobs.config import IngestConfig
    from jobs.describe.run import run_describe
    from jobs.tables.ingest import run_ingest

    tables, log_dir = workdir / "tables", workdir / f"engines_{layout}_{mode}"
    shutil.rmtree(log_dir, ignore_errors=True)
    config = describe_config(args, tables, f"{layout}_{mode}", log_dir)
    run_ingest(IngestConfig(source=str(corpus_manifest), table=config.input_table,
                            hash_content=False), spark)
    # By its importable name, also when this file runs as __main__: pickled by reference.
    factory = importlib.import_module("benchmarks.fleet_engine").make_paced_engine
    started = time.time()
    with StepTimer(DRIVER_STEPS) as steps:
        summary = run_describe(config, spark, make_engine=factory)
    seconds = time.time() - started
    records = read_records(log_dir)
    return {
        "layout": layout, "mode": "pipelined" if mode == "on" else "serial",
        "rows": summary.rows_processed,
        "chunks": summary.chunks, "statuses": summary.tally.statuses,
        "run_seconds": round(seconds, 1), **fleet_figures(records, args.engines),
        "timeline": chunk_timeline(records, steps.spans),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="900 rows in 6 chunks, tasks of 50 (one per GPU per chunk), "
                        "pipelined only (unless --runs says otherwise): about 4 minutes on 2 "
                        "cores (1,500 rows in 10 chunks took 5 min 41 s)")
    parser.add_argument("--runs", default=None,
                        help="LAYOUT/MODE,...: LAYOUT per-stage, session-wide or "
                        "per-stage-no-wait (which tasks take a GPU; LAYOUTS), MODE off or on "
                        "(pipeline_chunks); default "
                        "per-stage/off,per-stage/on (--quick: per-stage/on)")
    parser.add_argument("--engines", type=int, default=3)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--chunks", type=int, default=None, help="default 10 (--quick: 6)")
    parser.add_argument("--capacity", type=int, default=8, help="requests per engine at once")
    parser.add_argument("--service-s", type=float, default=1.0, help="seconds per request")
    parser.add_argument("--slow", type=float, default=1.3, help="the last GPU's slowdown")
    parser.add_argument("--tasks-per-slot", type=int, default=None,
                        help="engine tasks per GPU per chunk (default 1 with --quick, else 2)")
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "bench-fleet")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.rows = args.rows or (900 if args.quick else 6000)
    args.chunks = args.chunks or (6 if args.quick else 10)
    args.tasks_per_slot = args.tasks_per_slot or (1 if args.quick else 2)
    args.runs = args.runs or ("per-stage/on" if args.quick else "per-stage/off,per-stage/on")
    workdir = args.workdir.resolve()
    shutil.rmtree(workdir / "tables", ignore_errors=True)
    corpus = make_corpus(Params(rows=args.rows, ingest_rows=(args.rows,), thumbnails=50,
                                thumbnail_px=32, workdir=workdir))
    from tests.standalone import start_cluster

    cluster = start_cluster(workdir / "cluster", gpus=[str(i) for i in range(args.engines)],
                            cores=2 * args.engines, memory=f"{2 * args.engines}g")
    runs = [tuple(run.split("/")) for run in args.runs.split(",")]
    modes = []
    try:
        for layout in dict.fromkeys(layout for layout, _ in runs):  # one session per layout
            spark = start_spark(cluster.url, args.engines, workdir, layout)
            try:
                modes += [run_mode(spark, args, corpus.manifests[args.rows], workdir, layout, mode)
                          for run_layout, mode in runs if run_layout == layout]
            finally:
                spark.stop()
    finally:
        cluster.stop()
    result = {
        "command": ".venv/bin/python " + shlex.join(
            ["benchmarks/bench_fleet.py", *(argv if argv is not None else sys.argv[1:])]),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "modes": modes,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for mode in modes:
        print(json.dumps({k: v for k, v in mode.items() if k != "timeline"}))
    print(f"fleet utilization {modes[-1]['fleet_utilization']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
