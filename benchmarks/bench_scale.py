"""Benchmark: the describe pipeline at the seed's scale, simulated on one machine.

An engine that answers instantly (every row still has its file read, decoded and checked), a
few thousand distinct small thumbnails reused under many paths (folder symlinks, so paths and
ids are distinct while the disk stays small; content hashing off), ``--rows`` input rows
ingested from a manifest and described in chunks of ``--chunk-size`` with write-back on.
Measured:

- ingest of a ``.txt`` manifest at each ``--ingest-rows`` (rows/s, peak RSS of the driver's
  Python process and of its JVM);
- the describe run: rows/s, per-chunk seconds of each step (the staging write, which runs the
  engine; the results MERGE, also Delta's own figure; dropping the staged rows; the
  write-back), and the input rows the write-back updated;
- the same run again, with nothing new (rows written back: the goal is 0, and no new input
  table version);
- ``candid status``, pending-row planning, and dedup planning (representatives of every row
  under ``--thumbnails`` distinct synthetic content hashes), each a Spark job.

Run: ``.venv/bin/python benchmarks/bench_scale.py`` (writes
``benchmarks/results/scale.json`` and the markdown section ``build/bench-scale-section.md``
for docs/benchmarks.md). 1 M rows take 10-15 minutes on 2 cores (9 min 57 s alone on the
machine, 2026-12-06).
"""

from __future__ import annotations

import os

# As in a Spark Python worker (Spark sets OMP_NUM_THREADS=1; the profiles OPENBLAS_NUM_THREADS).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402 - after the thread settings above, on purpose
import importlib  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing

from benchmarks.scale_probes import PeakRss, StepTimer, merge_metrics  # noqa: E402
from udfs.engines.base import Engine, Generation  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "scale.json"
# The section for docs/benchmarks.md, to paste by hand (the doc also says what was measured).
DRAFT = REPO / "build" / "bench-scale-section.md"


class InstantEngine(Engine):
    """Answers at once: what is left is Candid's own cost per row (read, decode, check,
    guardrails, Arrow, Delta)."""

    def generate(self, images, prompt, sampling) -> list[Generation]:
        return [Generation(text=f"a {image.width}x{image.height} test image",
                           token_ids=(1, 2), finish_reason="stop", prompt_tokens=1)
                for image in images]

    def shutdown(self) -> None:
        """Nothing to release."""


def make_instant_engine(settings, image_settings) -> Engine:
    """Module level, so Spark pickles it by reference (``benchmarks.bench_scale``)."""
    return InstantEngine(settings, image_settings)


@dataclass(frozen=True)
class Params:
    rows: int = 1_000_000
    ingest_rows: tuple[int, ...] = (1_000_000, 12_800_000)
    thumbnails: int = 2000
    chunk_size: int = 100_000
    batch_size: int = 256
    thumbnail_px: int = 96
    workdir: Path = REPO / "build" / "bench-scale"


@dataclass
class Corpus:
    """Thumbnails, the folder links that multiply their paths, and the manifests."""

    thumbs: Path
    links: Path
    manifests: dict[int, Path] = field(default_factory=dict)


def make_corpus(params: Params) -> Corpus:
    from random import Random

    from jobs.demo.run import draw_scene

    corpus = Corpus(params.workdir / "thumbs", params.workdir / "links")
    corpus.thumbs.mkdir(parents=True, exist_ok=True)
    rng = Random(7)
    for index in range(params.thumbnails):
        path = corpus.thumbs / f"t{index:05d}.jpg"
        if not path.exists():
            draw_scene(rng, params.thumbnail_px, params.thumbnail_px).save(path, quality=80)
    corpus.links.mkdir(exist_ok=True)
    for size in sorted({params.rows, *params.ingest_rows}):
        # Every path must exist for the described rows; beyond them ingest never opens a file.
        folders = -(-min(size, params.rows) // params.thumbnails)
        for folder in range(folders):
            link = corpus.links / f"d{folder}"
            if not link.exists():
                link.symlink_to(corpus.thumbs, target_is_directory=True)
        corpus.manifests[size] = write_manifest(corpus, size, params.thumbnails)
    return corpus


def write_manifest(corpus: Corpus, rows: int, thumbnails: int) -> Path:
    """``rows`` distinct paths, row i naming thumbnail ``i % thumbnails`` in link ``i // it``."""
    path = corpus.links.parent / f"manifest_{rows}.txt"
    if not path.exists():
        with path.open("w", encoding="utf-8") as out:
            for start in range(0, rows, 100_000):
                out.writelines(
                    f"{corpus.links}/d{i // thumbnails}/t{i % thumbnails:05d}.jpg\n"
                    for i in range(start, min(rows, start + 100_000))
                )
    return path


def timed_ingest(spark, manifest: Path, table: Path) -> dict[str, Any]:
    from jobs.config import IngestConfig
    from jobs.tables.ingest import run_ingest

    shutil.rmtree(table, ignore_errors=True)
    config = IngestConfig(source=str(manifest), table=str(table), hash_content=False)
    with PeakRss() as rss:
        started = time.perf_counter()
        summary = run_ingest(config, spark)
        seconds = time.perf_counter() - started
    return {"rows": summary.table_rows, "seconds": round(seconds, 1),
            "rows_per_s": round(summary.table_rows / seconds), **rss.figures()}


def describe_config(params: Params, input_table: Path):
    from jobs.config import DescribeConfig, load_config

    return load_config(DescribeConfig, {
        "input_table": str(input_table),
        "results_table": str(params.workdir / "tables" / "results"),
        "engine": {"backend": "vllm", "model": "instant", "model_id": "bench/instant"},
        "images": {"max_pixels": 200704},
        "prompt": {"version": "v2", "dir": str(REPO / "conf" / "prompts")},
        "batch_size": params.batch_size,
        "chunk_size": params.chunk_size,
        "source_column": {"enabled": True},
        "mlflow": {"enabled": False},
    })


def timed_describe(spark, config) -> dict[str, Any]:
    """One describe run with every step timed; write-back figures from the input table's
    Delta history (what its owner would see)."""
    from jobs.describe.run import run_describe
    from jobs.tables.delta_io import latest_version, table_exists

    input_before = latest_version(spark, config.input_table)
    results_before = (
        latest_version(spark, config.results_table)
        if table_exists(spark, config.results_table) else -1
    )
    # By its importable name, also when this file runs as __main__: pickled by reference.
    factory = importlib.import_module("benchmarks.bench_scale").make_instant_engine
    with StepTimer() as steps, PeakRss() as rss:
        started = time.perf_counter()
        summary = run_describe(config, spark, make_engine=factory)
        seconds = time.perf_counter() - started
    written = merge_metrics(spark, config.input_table, after=input_before)
    return {
        "rows_processed": summary.rows_processed, "chunks": summary.chunks,
        "statuses": summary.tally.statuses, "seconds": round(seconds, 1),
        "rows_per_s": round(summary.rows_processed / seconds, 1),
        "plan_s": steps.seconds("plan_pending"),
        "final_write_back_s": steps.seconds("final_write_back"),
        "chunk_steps": steps.per_chunk(),
        "results_merge_ms": [m["executionTimeMs"] for m in merge_metrics(
            spark, config.results_table, after=results_before)],
        "write_back_commits": len(written),
        "write_back_rows_updated": sum(m["numTargetRowsUpdated"] for m in written),
        "input_version_before": input_before,
        "input_version_after": latest_version(spark, config.input_table),
        **rss.figures(),
    }


def timed_status(spark, config) -> dict[str, Any]:
    from jobs.describe.status import read_status

    with PeakRss() as rss:
        started = time.perf_counter()
        status = read_status(spark, config)
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 1), "input_rows": status.input_rows, "ok": status.ok,
            "pending": status.pending, **rss.figures()}


def timed_dedup_planning(spark, config, thumbnails: int) -> dict[str, Any]:
    """Representatives and duplicates of every input row, as if ingest had hashed the files
    (the hash stands for the thumbnail a path names)."""
    from pyspark.sql import functions as F

    from jobs.describe.dedup import split_representatives
    from jobs.tables.inputs import HASH, read_inputs

    inputs = read_inputs(spark, config).withColumn(
        HASH, F.sha2(F.regexp_extract("path", r"(t\d+\.jpg)$", 1), 256))
    with PeakRss() as rss:
        started = time.perf_counter()
        representatives, duplicates = split_representatives(inputs.withColumn("attempts", F.lit(1)))
        counts = (representatives.count(), duplicates.count())
        seconds = time.perf_counter() - started
    assert counts[0] == thumbnails, counts
    return {"seconds": round(seconds, 1), "representatives": counts[0],
            "duplicates": counts[1], **rss.figures()}


def run_benchmark(spark, params: Params) -> dict[str, Any]:
    """Every phase in order; returns the figures (JSON-ready)."""
    corpus = make_corpus(params)
    tables = params.workdir / "tables"
    ingest = {}
    for size in params.ingest_rows:
        table = tables / ("images" if size == params.rows else f"ingest_{size}")
        ingest[str(size)] = timed_ingest(spark, corpus.manifests[size], table)
        if size != params.rows:
            shutil.rmtree(table, ignore_errors=True)  # only measured
    if str(params.rows) not in ingest:
        timed_ingest(spark, corpus.manifests[params.rows], tables / "images")
    shutil.rmtree(tables / "results", ignore_errors=True)
    shutil.rmtree(tables / "results_staging", ignore_errors=True)
    config = describe_config(params, tables / "images")
    return {
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(params).items()},
        "ingest": ingest,
        "describe": timed_describe(spark, config),
        "rerun": timed_describe(spark, config),
        "status": timed_status(spark, config),
        "dedup_planning": timed_dedup_planning(spark, config, params.thumbnails),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=Params.rows)
    parser.add_argument("--ingest-rows", default="1000000,12800000",
                        help="comma-separated manifest sizes to ingest")
    parser.add_argument("--thumbnails", type=int, default=Params.thumbnails)
    parser.add_argument("--chunk-size", type=int, default=Params.chunk_size)
    parser.add_argument("--workdir", type=Path, default=Params.workdir)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--draft", type=Path, default=DRAFT)
    args = parser.parse_args(argv)
    params = Params(
        rows=args.rows, ingest_rows=tuple(int(n) for n in args.ingest_rows.split(",") if n),
        thumbnails=args.thumbnails, chunk_size=args.chunk_size, workdir=args.workdir.resolve(),
    )
    spark = start_spark(params.workdir)
    try:
        result = run_benchmark(spark, params)
    finally:
        spark.stop()
    result["command"] = ".venv/bin/python " + shlex.join(
        ["benchmarks/bench_scale.py", *(argv if argv is not None else sys.argv[1:])])
    result["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    from benchmarks.scale_report import markdown

    args.draft.write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0


def start_spark(workdir: Path):
    from jobs.cluster.spark_session import build_spark
    from jobs.job_settings import SparkSettings
    from udfs.engines.vllm_env import prepare_process_env

    prepare_process_env(str(REPO / "build"))
    # The Python workers import this module by name to build the engine.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return build_spark(SparkSettings(
        profile=str(REPO / "conf" / "spark" / "local.yaml"), app_name="candid-bench-scale",
        ivy_home=str(REPO / "build" / "ivy"),
        conf={"spark.sql.warehouse.dir": str(workdir / "warehouse")},
    ), log_file=workdir / "spark.log")


if __name__ == "__main__":
    sys.exit(main())
