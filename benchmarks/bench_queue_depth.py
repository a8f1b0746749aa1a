"""Benchmark: images/s of the vLLM engine against requests in flight, and of the describe feeding.

One process, one vLLM engine (CPU build here, in-process), the tiny random-weight Qwen2-VL, N
distinct synthetic thumbnails, the v2 prompt and 96 output tokens. No Spark. Modes:

* ``generate/call``: the images handed to ``generate`` ``depth`` at a time (the old UDF's
  pattern: every call ends in a tail where a few long sequences run alone);
* ``stream``: the engine loop (``VllmStream``) kept at ``depth`` requests in flight, a new one
  added as each finishes;
* ``describe (streamed)``: ``udfs.runner.task.run_batches`` (describing) on the files, in frames of
  ``batch_size`` rows (the frames the UDF gets), decoding in its thread pool while the engine
  works,
  keeping ``max_num_seqs`` (+ headroom) in flight;
* ``old batch-wise``: what the UDF did before: decode ``batch_size`` images, ``generate`` them,
  then decode the next batch.

The direct modes get decoded images (engine time only); the describe modes read the files.
Last, the prefix-cache ratio (cached / prompt tokens) of each prompt version, streamed.
Before every run the engine's prefix and multi-modal caches are cleared, so repeated rounds on
the same images do not find their pixels cached. Each configuration runs ``--rounds`` times;
the median is reported.

Run: ``.venv/bin/python benchmarks/bench_queue_depth.py`` (writes
``benchmarks/results/queue_depth.json`` and prints a markdown table).
"""

from __future__ import annotations

import os

# Before numpy is imported, as in a Spark Python worker (Spark sets OMP_NUM_THREADS=1): left
# alone, OpenBLAS (the BLAS dot in udfs.images.pixels.laplacian_variance) keeps threads spinning
# after each call, which here took the engine's core and slowed its steps by a third.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402 - after the thread settings above, on purpose
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing

from udfs.engines.vllm_env import prepare_process_env  # noqa: E402 - needs sys.path above

OUT = REPO / "benchmarks" / "results" / "queue_depth.json"
# Room for 256 sequences of ~500 prompt + 96 output tokens, with the tiny model's small KV.
KV_CACHE_BYTES = 512 << 20


@dataclass
class Run:
    """One timed pass over all images; ``cpu_s`` is this process's CPU time during it and
    ``load_1min`` the machine's load average after it (the machine is shared)."""

    seconds: float
    images: int
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    feed: dict[str, Any] = field(default_factory=dict)
    cpu_s: float = 0.0
    load_1min: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def _tally(run: Run, generations) -> Run:
    for g in generations:
        if hasattr(g, "prompt_tokens"):
            run.prompt_tokens += g.prompt_tokens
            run.cached_prompt_tokens += g.cached_prompt_tokens or 0
            run.completion_tokens += g.completion_tokens
    return run


def run_generate_per_call(engine, images, depth, prompt, sampling) -> Run:
    started, outputs = time.perf_counter(), []
    for start in range(0, len(images), depth):
        outputs += engine.generate(images[start:start + depth], prompt, sampling)
    return _tally(Run(time.perf_counter() - started, len(images)), outputs)


def run_streamed(engine, images, depth, prompt, sampling) -> Run:
    from udfs.engines.base import PromptCall, Request

    stream, call = engine.open_stream(), PromptCall(prompt, sampling)
    started, outputs, submitted = time.perf_counter(), [], 0
    while len(outputs) < len(images):
        while submitted < len(images) and stream.in_flight < depth:
            stream.submit(Request(submitted, call, images[submitted]))
            submitted += 1
        outputs += [outcome for _, outcome in stream.poll()]
    return _tally(Run(time.perf_counter() - started, len(images)), outputs)


def _frames(paths: list[str], size: int):
    import pandas as pd

    for start in range(0, len(paths), size):
        chunk = paths[start:start + size]
        ids = [f"i{start + i}" for i in range(len(chunk))]
        yield pd.DataFrame({"image_id": ids, "path": chunk})


def run_describe(engine, paths, batch_size, task) -> Run:
    from udfs.runner.task import run_batches

    task = task.model_copy(update={"batch_size": batch_size})
    stats = []
    started = time.perf_counter()
    out = list(run_batches(_frames(paths, batch_size), task, lambda: engine,
                           on_stats=stats.append))
    seconds = time.perf_counter() - started
    rows = sum(len(frame) for frame in out)
    feed = stats[0]
    return Run(seconds, rows, feed.prompt_tokens, feed.cached_prompt_tokens or 0,
               feed.completion_tokens, feed=feed.to_dict())


def run_old_batchwise(engine, paths, batch_size, task) -> Run:
    from udfs.images.prepare import load_image

    started, outputs = time.perf_counter(), []
    for start in range(0, len(paths), batch_size):
        prepared = [load_image(p, task.images) for p in paths[start:start + batch_size]]
        ready = [item.image for item in prepared if item.ok]
        outputs += engine.generate(ready, task.prompt, task.sampling)
    return _tally(Run(time.perf_counter() - started, len(paths)), outputs)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def summarize(label: str, depth: str, runs: list[Run]) -> dict[str, Any]:
    """The median of a configuration's rounds, with the median run's details."""
    median_run = sorted(runs, key=lambda r: r.images_per_s)[len(runs) // 2]
    return {
        "mode": label, "depth": depth,
        "median_images_per_s": statistics.median(r.images_per_s for r in runs),
        "rounds_images_per_s": [round(r.images_per_s, 1) for r in runs],
        "rounds_load_1min": [round(r.load_1min, 1) for r in runs],
        "median_cpu_ms_per_image": statistics.median(1000 * r.cpu_s / r.images for r in runs),
        "cached_prompt_ratio": median_run.cached_prompt_tokens / median_run.prompt_tokens
        if median_run.prompt_tokens else None,
        "median_run": {**asdict(median_run), "images_per_s": median_run.images_per_s},
    }


def build(args) -> tuple[Any, Any, list[str], list[Any]]:
    """The engine, the describe task, the image paths and their decoded images."""
    from jobs.demo.run import make_sample_images
    from jobs.demo.tiny_model import make_tiny_model
    from udfs.engines import create_engine
    from udfs.images.prepare import load_image
    from udfs.prompts import find_prompt
    from udfs.runner.describe import DescribeTask
    from udfs.settings import EngineSettings, ImageSettings

    model = make_tiny_model(REPO / "build" / "tiny-qwen2-vl")
    folder = Path(tempfile.mkdtemp(prefix="candid-queue-depth-"))
    paths = [str(p) for p in make_sample_images(folder, count=args.images, seed=args.seed).paths]
    images_settings = ImageSettings(max_pixels=200704)
    settings = EngineSettings(
        backend="vllm", model=str(model), model_id="bench/tiny-qwen2-vl", dtype="float32",
        vllm={"enforce_eager": True, "kv_cache_memory_bytes": KV_CACHE_BYTES,
              "max_model_len": 2048, "max_num_seqs": args.max_num_seqs},
    )
    prompt = find_prompt(REPO / "conf" / "prompts", "v2")
    sampling = prompt.sampling.model_copy(update={"max_tokens": args.max_tokens})
    task = DescribeTask(engine=settings, images=images_settings, prompt=prompt, sampling=sampling)
    decoded = [load_image(p, images_settings) for p in paths]
    assert all(item.ok for item in decoded), [i.message for i in decoded if not i.ok]
    distinct = len({item.metrics["content_sha256"] for item in decoded})
    assert distinct == len(paths), f"only {distinct} of {len(paths)} images are distinct"
    engine = create_engine(settings, images_settings)
    return engine, task, paths, [item.image for item in decoded]


def run_all(args, engine, task, paths, images) -> list[dict[str, Any]]:
    """Every configuration once per round, round after round: on a shared machine, noise then
    hits every configuration alike instead of whichever ran during a busy minute."""
    prompt, sampling = task.prompt, task.sampling
    engine.generate(images[:16], prompt, sampling)  # warm-up: first-call allocations
    depths = [(str(d), d) for d in args.depths] + [(f"all ({len(images)})", len(images))]
    configs = [("generate/call", name, run_generate_per_call, (images, d, prompt, sampling))
               for name, d in depths]
    configs += [("stream", name, run_streamed, (images, d, prompt, sampling)) for name, d in depths]
    for size in args.batch_sizes:
        configs.append(("describe (streamed)", f"batch_size {size}", run_describe,
                        (paths, size, task)))
        configs.append(("old batch-wise", f"batch_size {size}", run_old_batchwise,
                        (paths, size, task)))
    runs: list[list[Run]] = [[] for _ in configs]
    for round_no in range(args.rounds):
        for (label, depth, fn, fn_args), done in zip(configs, runs, strict=True):
            engine.reset_caches()
            cpu = _cpu_seconds()
            done.append(fn(engine, *fn_args))
            done[-1].cpu_s = _cpu_seconds() - cpu
            done[-1].load_1min = os.getloadavg()[0]
            print(f"  round {round_no + 1} {label} {depth}: "
                  f"{done[-1].images_per_s:.1f} images/s", flush=True)
    return [
        summarize(label, depth, done)
        for (label, depth, _, _), done in zip(configs, runs, strict=True)
    ]


def prefix_ratios(args, engine, images) -> list[dict[str, Any]]:
    """Cached / prompt tokens per prompt version, streamed, from a cold prefix cache."""
    from udfs.prompts import find_prompt

    found = []
    for version in args.prefix_prompts:
        prompt = find_prompt(REPO / "conf" / "prompts", version)
        sampling = prompt.sampling.model_copy(update={"max_tokens": args.max_tokens})
        engine.reset_caches()
        run = run_streamed(engine, images[:args.prefix_images], args.max_num_seqs, prompt, sampling)
        found.append({"prompt": version, "images": run.images, "prompt_tokens": run.prompt_tokens,
                      "cached_prompt_tokens": run.cached_prompt_tokens,
                      "ratio": run.cached_prompt_tokens / run.prompt_tokens})
        print(f"  prefix cache {version}: {found[-1]['ratio']:.2f}", flush=True)
    return found


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| mode | requests in flight / batch | images/s (median) | rounds | CPU ms/image | "
        "engine-busy | in engine step | cached/prompt tokens |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        feed = r["median_run"]["feed"]
        busy = f"{feed['busy_fraction']:.2f}" if feed else "-"
        step = f"{feed['step_s'] / feed['wall_s']:.2f}" if feed else "-"
        ratio = f"{r['cached_prompt_ratio']:.2f}" if r["cached_prompt_ratio"] is not None else "-"
        rounds = ", ".join(f"{v:.1f}" for v in r["rounds_images_per_s"])
        lines.append(f"| {r['mode']} | {r['depth']} | **{r['median_images_per_s']:.1f}** | "
                     f"{rounds} | {r['median_cpu_ms_per_image']:.1f} | {busy} | {step} | "
                     f"{ratio} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="distinct thumbnails")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--prefix-prompts", nargs="*", default=["v1", "v2", "v3"],
                        help="prompt versions whose prefix-cache ratio is measured")
    parser.add_argument("--prefix-images", type=int, default=64)
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prepare_process_env(str(REPO / "build"))  # before vLLM is imported
    load_at_start = os.getloadavg()
    engine, task, paths, images = build(args)
    try:
        results = run_all(args, engine, task, paths, images)
        prefix = prefix_ratios(args, engine, images)
    finally:
        engine.shutdown()
    report = {
        "benchmark": "queue_depth",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/bench_queue_depth.py",
                               *(argv or sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "load_average_at_start": load_at_start,
                    "thread_env": {k: os.environ.get(k) for k in
                                   ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}},
        "settings": {"images": args.images, "max_tokens": args.max_tokens, "prompt": "v2",
                     "engine": task.engine.model_dump(mode="json"),
                     "max_pixels": task.images.max_pixels, "rounds": args.rounds},
        "results": results,
        "prefix_cache": prefix,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown(results))
    print("\n| prompt | cached / prompt tokens |\n|---|---:|")
    print("\n".join(f"| {p['prompt']} | {p['ratio']:.2f} |" for p in prefix))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
