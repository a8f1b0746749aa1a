"""Benchmark: what token log-probabilities and the live scheduler figures cost the engine loop.

Every Candid request asks vLLM for the sampled tokens' log-probabilities (``logprobs=0``,
``flat_logprobs``), and after every step the stream reads vLLM's scheduler
(``udfs.engines.vllm_scheduler.SchedulerView``). Both run in the thread that drives the engine,
so their cost is engine time lost. One process, one vLLM engine (CPU build, in process), the
tiny random-weight Qwen2-VL, distinct thumbnails, the v2 prompt, ``--max-tokens`` output tokens,
the engine's stream kept full (``max_num_seqs`` + headroom in flight).

Two measurements:

* **shares**: the engine thread's CPU time (``time.thread_time``) inside each added code path,
  found by wrapping the functions that do the work: vLLM's front end turning each token's
  log-probability into Python objects (``LogprobsProcessor._update_sample_logprobs``, which
  also decodes the token's text), vLLM's sampler (``Sampler.compute_logprobs``,
  ``gather_logprobs``), Candid's extraction (``vllm_engine._token_logprobs``) and the scheduler
  view (``after_step``, ``sample``). CPU time of one thread is robust to other processes on a
  shared machine;
* **A/B**: images/s with both on and with both off (log-probabilities not requested, no view),
  alternating, ``--rounds`` each; the medians. Wall time, so noisy on a shared machine.

The tiny model's steps are far cheaper than a real model's on a GPU, and its random tokens are
often incomplete UTF-8 (which vLLM's logprob decoding corrects at extra cost), so these shares
are an upper bound for production.

Run: ``.venv/bin/python benchmarks/bench_engine_stats_cost.py`` (writes
``benchmarks/results/engine_stats_cost.json`` and prints a markdown table).
"""

from __future__ import annotations

import os

# As in a Spark Python worker (Spark sets OMP_NUM_THREADS=1); see bench_queue_depth.py.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402 - after the thread settings above, on purpose
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing

from udfs.engines.vllm_env import prepare_process_env  # noqa: E402 - needs sys.path above

OUT = REPO / "benchmarks" / "results" / "engine_stats_cost.json"
KV_CACHE_BYTES = 256 << 20


class Meter:
    """Adds up the calling thread's CPU time inside wrapped functions, per label."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, owner: Any, name: str, label: str) -> None:
        raw = vars(owner).get(name)
        function = getattr(owner, name)

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[label] = self.spent.get(label, 0.0) + time.thread_time() - started

        setattr(owner, name, staticmethod(timed) if isinstance(raw, staticmethod) else timed)


def build(args: argparse.Namespace) -> tuple[Any, Any, list[Any]]:
    """The engine, the prompt call, the decoded thumbnails."""
    from jobs.demo.run import make_sample_images
    from jobs.demo.tiny_model import make_tiny_model
    from udfs.engines import create_engine
    from udfs.engines.base import PromptCall
    from udfs.images.prepare import load_image
    from udfs.prompts import find_prompt
    from udfs.settings import EngineSettings, ImageSettings

    model = make_tiny_model(REPO / "build" / "tiny-qwen2-vl")
    folder = Path(tempfile.mkdtemp(prefix="candid-stats-cost-"))
    paths = make_sample_images(folder, count=args.images, seed=args.seed).paths
    image_settings = ImageSettings(max_pixels=200704)
    settings = EngineSettings(
        backend="vllm", model=str(model), model_id="bench/tiny-qwen2-vl", dtype="float32",
        vllm={"enforce_eager": True, "kv_cache_memory_bytes": KV_CACHE_BYTES,
              "max_model_len": 2048, "max_num_seqs": args.max_num_seqs},
    )
    prompt = find_prompt(REPO / "conf" / "prompts", "v2")
    call = PromptCall(prompt, prompt.sampling.model_copy(update={"max_tokens": args.max_tokens}))
    images = [load_image(str(p), image_settings).image for p in paths]
    return create_engine(settings, image_settings), call, images


def run_stream(engine: Any, call: Any, images: list[Any], added: bool) -> float:
    """Images/s through the engine's stream; ``added=False`` asks no log-probabilities and
    drops the scheduler view (what the loop cost before both existed)."""
    from udfs.engines.base import Request

    engine.reset_caches()
    build_params = type(engine)._sampling_params
    if not added:
        def plain(self: Any, prompt: Any, sampling: Any) -> Any:
            params = build_params(self, prompt, sampling)
            params.logprobs, params.flat_logprobs = None, False
            return params

        type(engine)._sampling_params = plain
    try:
        stream = engine.open_stream()
        if not added:
            stream._view = None
        started, done, submitted = time.perf_counter(), 0, 0
        while done < len(images):
            while submitted < len(images) and stream.in_flight < stream.depth:
                stream.submit(Request(submitted, call, images[submitted]))
                submitted += 1
            done += len(stream.poll())
            stream.engine_sample()
        return len(images) / (time.perf_counter() - started)
    finally:
        type(engine)._sampling_params = build_params


def measure_shares(engine: Any, call: Any, images: list[Any], rounds: int) -> dict[str, Any]:
    from vllm.v1.engine.llm_engine import LLMEngine
    from vllm.v1.engine.logprobs import LogprobsProcessor
    from vllm.v1.sample.sampler import Sampler

    from udfs.engines import vllm_engine, vllm_scheduler

    meter = Meter()
    meter.wrap(LLMEngine, "step", "vLLM step (all of it)")
    meter.wrap(LogprobsProcessor, "_update_sample_logprobs", "logprobs: vLLM front end")
    meter.wrap(Sampler, "compute_logprobs", "logprobs: vLLM sampler log_softmax")
    meter.wrap(Sampler, "gather_logprobs", "logprobs: vLLM sampler gather")
    meter.wrap(vllm_engine, "_token_logprobs", "logprobs: Candid extraction")
    meter.wrap(vllm_scheduler.SchedulerView, "after_step", "scheduler view: after_step")
    meter.wrap(vllm_scheduler.SchedulerView, "sample", "scheduler view: sample")
    run_stream(engine, call, images, added=True)  # warm-up
    meter.spent.clear()
    started = time.thread_time()
    for _ in range(rounds):
        run_stream(engine, call, images, added=True)
    total = time.thread_time() - started
    return {"thread_cpu_s": total,
            "shares": {label: spent / total for label, spent in meter.spent.items()}}


def measure_ab(engine: Any, call: Any, images: list[Any], rounds: int) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(rounds):
        for variant in ("off", "on"):
            runs[variant].append(run_stream(engine, call, images, added=variant == "on"))
    medians = {variant: statistics.median(values) for variant, values in runs.items()}
    return {"rounds_images_per_s": runs, "median_images_per_s": medians,
            "ratio_on_vs_off": medians["on"] / medians["off"]}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| code path | share of the engine thread's CPU |", "|---|---:|"]
    shares: dict[str, float] = result["shares"]["shares"]
    for label, share in sorted(shares.items(), key=lambda item: -item[1]):
        lines.append(f"| {label} | {100 * share:.1f} % |")
    added = sum(v for k, v in shares.items() if k.startswith(("logprobs", "scheduler")))
    lines.append(f"| **all added paths** | **{100 * added:.1f} %** |")
    ab = result["ab"]
    rounds = {k: ", ".join(f"{v:.1f}" for v in vs) for k, vs in ab["rounds_images_per_s"].items()}
    lines += ["", "| variant | images/s (median) | rounds |", "|---|---:|---|",
              f"| without (no logprobs, no view) | {ab['median_images_per_s']['off']:.1f} | "
              f"{rounds['off']} |",
              f"| with both | {ab['median_images_per_s']['on']:.1f} | {rounds['on']} |"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=128, help="distinct thumbnails")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, report: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    prepare_process_env(str(REPO / "build"))
    engine, call, images = build(args)
    try:
        result = {
            "command": "python benchmarks/bench_engine_stats_cost.py "
                       + shlex.join(argv if argv is not None else sys.argv[1:]),
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "shares": measure_shares(engine, call, images, args.rounds),
            "ab": measure_ab(engine, call, images, args.rounds),
        }
    finally:
        engine.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    report(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
