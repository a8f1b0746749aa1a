"""Benchmark: the Spark tax. The same distinct thumbnails through

(a) one plain Python process driving the vLLM engine directly: (a1) the engine's stream with
    every request in flight (pre-decoded images: engine time only), (a2) the streamed describe
    path (``run_batches``: reading, decoding, guardrails, result frames) in-process;
(b) the describe job on Spark with one Python worker (``local[1]``, one partition, one chunk),
    the same engine settings, results committed to Delta; the engine either in an engine
    server (``--placement server``, the default: the placement GPU tasks get) or inside the
    Python worker (``--placement worker``).

Steady state is a marginal rate between two sizes (``large - small`` rows over the difference
of their times), so the fixed costs of each path (Spark start, engine start, planning, commits)
cancel; they are listed separately, and end-to-end rates include them. Every job run starts a
fresh SparkSession, hence a fresh Python worker that builds its engine again (with the engine
server, the server is stopped after each run, so it too starts afresh with empty caches), so
both sizes pay the same fixed costs. Rounds are interleaved (a, b, a, b) so that a busy minute
on this shared machine hits both paths.

Run: ``.venv/bin/python benchmarks/bench_spark_tax.py [--placement server|worker]`` (writes
``benchmarks/results/spark_tax_server.json`` or ``spark_tax.json`` and prints a markdown
table).
"""

from __future__ import annotations

import os

# As in a Spark Python worker (Spark sets OMP_NUM_THREADS=1; the profiles OPENBLAS_NUM_THREADS).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402 - after the thread settings above, on purpose
import json  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_queue_depth import KV_CACHE_BYTES, run_describe, run_streamed  # noqa: E402

from udfs.engines.vllm_env import prepare_process_env  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
OUT = {"worker": RESULTS / "spark_tax.json", "server": RESULTS / "spark_tax_server.json"}
MAX_NUM_SEQS = 256  # the direct engine's best depth in benchmarks/results/queue_depth.json
BATCH_SIZE = 64  # rows per frame into the UDF in the job (batch_size), per frame in (a2)


def _settings(model: Path, placement: str):
    from udfs.settings import EngineSettings, ImageSettings

    engine = EngineSettings(
        backend="vllm", model=str(model), model_id="bench/tiny-qwen2-vl", dtype="float32",
        placement=placement,
        vllm={"enforce_eager": True, "kv_cache_memory_bytes": KV_CACHE_BYTES,
              "max_model_len": 2048, "max_num_seqs": MAX_NUM_SEQS},
    )
    return engine, ImageSettings(max_pixels=200704)


def _marginal(small: int, large: int, t_small: float, t_large: float) -> float:
    return (large - small) / (t_large - t_small)


def direct_round(engine, task, paths, images, small: int) -> dict[str, float]:
    """(a1) and (a2) on ``small`` and all images, on a warm engine with its caches cleared."""
    times: dict[str, float] = {}
    for label, run in (("a1", run_streamed), ("a2", run_describe)):
        for size in (small, len(paths)):
            engine.reset_caches()
            if label == "a1":
                result = run(engine, images[:size], size, task.prompt, task.sampling)
            else:
                result = run(engine, paths[:size], BATCH_SIZE, task)
            assert result.images == size
            times[f"{label}_{size}"] = result.seconds
    return times


def job_round(configs: dict[int, Any], spark_settings, label: str) -> dict[str, float]:
    """(b) on each size, each in a fresh SparkSession (fresh worker, fresh engine), into
    results tables of their own (``label``: a round's tables start empty)."""
    from pyspark.sql import SparkSession

    from jobs.cluster.spark_session import build_spark
    from jobs.describe.run import run_describe as describe_job

    times: dict[str, float] = {}
    for size, config in configs.items():
        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
        started = time.perf_counter()
        spark = build_spark(spark_settings)
        times[f"spark_start_{size}"] = time.perf_counter() - started
        fresh = config.model_copy(update={"results_table": f"{config.results_table}_{label}"})
        summary = describe_job(fresh, spark)
        assert summary.rows_processed == size, summary
        times[f"b_{size}"] = summary.seconds
        times[f"b_udf_{size}"] = summary.engine.wall_s
        times[f"b_busy_{size}"] = summary.engine.busy_fraction
        _stop_engine_server(spark)
    return times


def _stop_engine_server(spark) -> None:
    """Stop the engine server this session's executor (the driver's JVM, in local mode) used,
    if any: the next run starts from a fresh engine, as a fresh Python worker would."""
    from udfs.engines.server.client import stop_server
    from udfs.engines.server.protocol import ProcessId, ServerAddress

    jvm = ProcessId.of(spark.sparkContext._gateway.proc.pid)
    stop_server(ServerAddress.for_slot(jvm, None))


def prepare(args) -> dict[str, Any]:
    """The tiny model, distinct thumbnails, the engine for (a), the input tables for (b)."""
    from jobs.cluster.spark_session import build_spark
    from jobs.config import DescribeConfig, IngestConfig, load_config
    from jobs.demo.run import make_sample_images
    from jobs.demo.tiny_model import make_tiny_model
    from jobs.job_settings import SparkSettings
    from jobs.tables.ingest import run_ingest
    from udfs.engines import create_engine
    from udfs.images.prepare import load_image
    from udfs.prompts import find_prompt
    from udfs.runner.describe import DescribeTask

    model = make_tiny_model(REPO / "build" / "tiny-qwen2-vl")
    work = Path(tempfile.mkdtemp(prefix="candid-spark-tax-"))
    paths = [str(p) for p in make_sample_images(work / "images", count=args.large, seed=7).paths]
    engine_settings, image_settings = _settings(model, args.placement)
    prompt = find_prompt(REPO / "conf" / "prompts", "v2")
    task = DescribeTask(engine=engine_settings, images=image_settings, prompt=prompt,
                        sampling=prompt.sampling, batch_size=BATCH_SIZE)
    decoded = [load_image(p, image_settings) for p in paths]
    assert len({d.metrics["content_sha256"] for d in decoded}) == len(paths), "not distinct"
    spark_settings = SparkSettings(profile="conf/spark/local.yaml", master="local[1]",
                                   conf={"spark.default.parallelism": "1"})
    spark = build_spark(spark_settings)
    configs = {}
    for size in (args.small, args.large):
        manifest = work / f"images_{size}.txt"
        manifest.write_text("\n".join(paths[:size]) + "\n")
        table = str(work / f"images_{size}")
        run_ingest(IngestConfig(source=str(manifest), table=table, hash_content=False), spark)
        configs[size] = load_config(DescribeConfig, {
            "input_table": table, "results_table": str(work / f"results_{size}"),
            "engine": engine_settings.model_dump(), "images": image_settings.model_dump(),
            "prompt": {"version": "v2", "register_in_mlflow": False},
            "batch_size": BATCH_SIZE, "partitions": 1, "chunk_size": 1_000_000,
            "spark": spark_settings.model_dump(), "mlflow": {"enabled": False},
        })
    spark.stop()
    started = time.perf_counter()
    engine = create_engine(engine_settings, image_settings)
    engine_start = time.perf_counter() - started
    engine.generate([d.image for d in decoded[:16]], prompt, prompt.sampling)  # warm-up
    return {"engine": engine, "engine_start_s": engine_start, "task": task, "paths": paths,
            "images": [d.image for d in decoded], "configs": configs,
            "spark_settings": spark_settings}


def summarize(args, setup: dict[str, Any], rounds: list[dict[str, float]]) -> dict[str, Any]:
    small, large = args.small, args.large

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    rates = {
        label: _marginal(small, large, med(f"{label}_{small}"), med(f"{label}_{large}"))
        for label in ("a1", "a2", "b", "b_udf")
    }
    spark_start = med(f"spark_start_{large}")
    fixed_b = {size: med(f"b_{size}") - med(f"b_udf_{size}") for size in (small, large)}
    end_to_end = {
        "a1": large / (setup["engine_start_s"] + med(f"a1_{large}")),
        "a2": large / (setup["engine_start_s"] + med(f"a2_{large}")),
        "b": large / (spark_start + med(f"b_{large}")),
    }
    return {
        "steady_images_per_s": rates,
        "steady_ratio_job_vs_engine": rates["b"] / rates["a1"],
        "steady_ratio_job_vs_inprocess_describe": rates["b"] / rates["a2"],
        "steady_ratio_engine_stage_vs_engine": rates["b_udf"] / rates["a1"],
        "steady_ratio_engine_stage_vs_inprocess_describe": rates["b_udf"] / rates["a2"],
        "end_to_end_images_per_s": end_to_end,
        "end_to_end_ratio_job_vs_engine": end_to_end["b"] / end_to_end["a1"],
        "fixed_costs_s": {
            "spark_start (fresh session; the first start also launched the JVM)": spark_start,
            "engine_start (vLLM, tiny model, measured in-process)": setup["engine_start_s"],
            "job outside the UDF (planning, staging, MERGE, counts), small run": fixed_b[small],
            "job outside the UDF, large run": fixed_b[large],
        },
        "job_engine_busy_fraction_large": med(f"b_busy_{large}"),
    }


def table(result: dict[str, Any], args) -> str:
    rates, e2e = result["steady_images_per_s"], result["end_to_end_images_per_s"]
    lines = [
        "| path | steady images/s | end-to-end images/s |",
        "|---|---:|---:|",
        f"| (a1) engine stream, all {args.large} in flight | {rates['a1']:.1f} | {e2e['a1']:.1f} |",
        f"| (a2) run_batches in-process | {rates['a2']:.1f} | {e2e['a2']:.1f} |",
        f"| (b) describe job, local[1], engine placement {args.placement}, whole run | "
        f"{rates['b']:.1f} | {e2e['b']:.1f} |",
        f"| (b) its engine stage (the UDF's wall time) | {rates['b_udf']:.1f} | |",
        "",
        f"steady state: (b)/(a1) {result['steady_ratio_job_vs_engine']:.2f} "
        f"(engine stage {result['steady_ratio_engine_stage_vs_engine']:.2f}), (b)/(a2) "
        f"{result['steady_ratio_job_vs_inprocess_describe']:.2f} (engine stage "
        f"{result['steady_ratio_engine_stage_vs_inprocess_describe']:.2f}); end to end "
        f"(b)/(a1) {result['end_to_end_ratio_job_vs_engine']:.2f}",
        "",
        "| fixed cost | seconds |",
        "|---|---:|",
        *[f"| {name} | {seconds:.1f} |" for name, seconds in result["fixed_costs_s"].items()],
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=400)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--placement", choices=("server", "worker"), default="server",
                        help="where the job's engine runs (engine.placement)")
    args = parser.parse_args(argv)
    prepare_process_env(str(REPO / "build"))
    setup = prepare(args)
    # A first job run in this process pays one-off costs (Delta's and Spark's classes loading,
    # JIT warm-up) that later runs do not: run one, unmeasured, on the small table.
    job_round({args.small: setup["configs"][args.small]}, setup["spark_settings"], "warmup")
    rounds = []
    for number in range(args.rounds):
        times = direct_round(setup["engine"], setup["task"], setup["paths"], setup["images"],
                             args.small)
        times.update(job_round(setup["configs"], setup["spark_settings"], f"r{number}"))
        print(f"round {number + 1}: " + ", ".join(f"{k}={v:.2f}" for k, v in times.items()),
              flush=True)
        rounds.append(times)
    setup["engine"].shutdown()
    result = summarize(args, setup, rounds)
    report = {
        "benchmark": "spark_tax",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/bench_spark_tax.py", *(argv or sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "load_1min_after": os.getloadavg()[0]},
        "settings": {"small": args.small, "large": args.large, "rounds": args.rounds,
                     "placement": args.placement,
                     "max_num_seqs": MAX_NUM_SEQS, "batch_size": BATCH_SIZE,
                     "kv_cache_bytes": KV_CACHE_BYTES, "prompt": "describe/v2, 96 tokens"},
        "rounds": rounds, **result,
    }
    out = OUT[args.placement]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(result, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
