"""GPU smoke check: the tiny Qwen2-VL through every engine importable here, on a CUDA device,
with the production engine settings: bf16, CUDA graphs and torch.compile (no ``enforce_eager``),
prefix caching, Candid's streamed feeder, and the engine in its GPU's engine server
(``udfs.engines.server``, the placement tasks use on GPUs; ``--placement worker`` runs it in
this process instead).

Builds the random-weight tiny model and a few hundred synthetic thumbnails, then runs each
engine that imports (transformers always; vLLM when installed) through Candid's streamed
feeding (``udfs.runner.feeding.feed_frames``: background decoding, requests kept in flight) and
prints images/s and the engine-busy fraction per engine. Each engine gets a time budget, so the
whole check ends within about five minutes; the figures say how many images each engine finished.

Needs torch, transformers, tokenizers, torchvision, Pillow, numpy, pandas, pydantic, pyyaml and
opencv-python-headless: ``pip install -e '.[hf]'`` gives them (add vllm for the vLLM engine).
It never imports Spark, Delta, MLflow or vLLM unless that engine runs. Without CUDA it says so
and exits 0; ``--plan`` imports what a run needs and lists the engines, without running them.

``--preflight`` checks the NVIDIA driver against torch's CUDA build, gcc and Python.h (Triton
compiles a C launcher at run time) and that vLLM is installed, with the checks of ``candid
doctor``; ``benchmarks/gpu_smoke.sh`` runs it first, then the check, within 6 minutes.

Run: ``bash benchmarks/gpu_smoke.sh`` (writes ``benchmarks/results/gpu_smoke.json``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing

OUT = REPO / "benchmarks" / "results" / "gpu_smoke.json"
NEEDED_MODULES = ("torch", "transformers", "tokenizers", "torchvision", "PIL", "numpy", "pandas",
                  "pydantic", "yaml", "cv2")
# vLLM in this process, caches in a scratch folder (as udfs.engines.vllm_env.prepare_process_env
# does). KV cache for the tiny model: room for 256 sequences of ~600 tokens, far below a GPU's
# memory.
KV_CACHE_MIB = 2048
FRAME_ROWS = 16  # rows per input frame (an Arrow batch); the time budget is checked per frame


def cuda_problem() -> str | None:
    """Why this machine cannot run the check, or None."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return f"CUDA is not available (torch {torch.__version__}, CUDA build {torch.version.cuda})"
    return None


def missing_modules() -> list[str]:
    return [name for name in NEEDED_MODULES if importlib.util.find_spec(name) is None]


def engines_available() -> list[str]:
    """transformers always; vLLM when its package is installed."""
    return ["transformers"] + (["vllm"] if importlib.util.find_spec("vllm") is not None else [])


def engine_settings(backend: str, model_dir: Path, args, on_gpu: bool = True):
    """The engine as production runs it on a GPU (bf16, CUDA graphs, prefix caching); with
    ``on_gpu=False`` (``--allow-cpu``, checking this script) as the CPU build runs it."""
    from udfs.settings import EngineSettings

    groups = {
        "vllm": {"enforce_eager": not on_gpu, "enable_prefix_caching": True,
                 "kv_cache_memory_bytes": args.kv_cache_mib << 20,
                 "max_model_len": 2048, "max_num_seqs": args.max_num_seqs},
        "transformers": {"images_per_call": args.images_per_call},
    }
    return EngineSettings.model_validate({
        "backend": backend, "model": str(model_dir), "model_id": "smoke/tiny-qwen2-vl",
        "dtype": "bfloat16" if on_gpu else "float32", backend: groups[backend],
    })


def preflight_findings(facts, vllm_installed: bool, allow_no_vllm: bool) -> list:
    """``candid doctor``'s CUDA and compiler checks on this machine, and vLLM installed."""
    from jobs.cluster.doctor import BLOCKER, NOT_APPLICABLE, OK, Finding, check_compiler, check_cuda

    found = [*check_cuda([facts]), *check_compiler([facts])]
    if vllm_installed:
        found.append(Finding(OK, "vllm", f"installed: {facts.versions.get('vllm')}"))
    else:
        found.append(Finding(NOT_APPLICABLE if allow_no_vllm else BLOCKER, "vllm",
                             "not installed: only the transformers engine can run"))
    return found


def preflight(allow_no_vllm: bool) -> int:
    """Print the preflight's findings; 2 on a blocker."""
    from jobs.cluster.doctor import BLOCKER, EXIT_BLOCKER
    from udfs.engines.node_facts import collect_node_facts

    facts = collect_node_facts("this machine", model="")
    findings = preflight_findings(facts, importlib.util.find_spec("vllm") is not None,
                                  allow_no_vllm)
    for finding in findings:
        print(f"gpu_smoke preflight {finding.line()}")
    return EXIT_BLOCKER if any(f.level == BLOCKER for f in findings) else 0


def frames_until(paths: list[str], deadline: float) -> Iterator[Any]:
    """Input frames of ``FRAME_ROWS`` rows until ``deadline`` (then the engine drains)."""
    import pandas as pd

    for start in range(0, len(paths), FRAME_ROWS):
        if time.monotonic() > deadline:
            return
        chunk = paths[start:start + FRAME_ROWS]
        yield pd.DataFrame({"image_id": [str(start + i) for i in range(len(chunk))], "path": chunk})


def run_engine(backend: str, model_dir: Path, paths: list[str], args, on_gpu: bool = True
               ) -> dict[str, Any]:
    """Build one engine where ``args.placement`` says (``server``: in an engine server for
    GPU 0, reached over its socket, as production tasks reach it; ``worker``: in this
    process), feed it the thumbnails within its budget, report FeedStats."""
    from udfs.images.prepare import load_image
    from udfs.prompts import find_prompt
    from udfs.runner.describe import DescribeTask
    from udfs.runner.feed_stats import FeedStats
    from udfs.runner.feeding import feed_frames
    from udfs.settings import ImageSettings

    images = ImageSettings(max_pixels=200704)
    prompt = find_prompt(REPO / "conf" / "prompts", "v2")
    sampling = prompt.sampling.model_copy(update={"max_tokens": args.max_tokens})
    settings = engine_settings(backend, model_dir, args, on_gpu)
    started = time.monotonic()
    connect, reset, close = engine_connection(settings, images, args.placement)
    start_s = time.monotonic() - started
    stats = FeedStats()
    task = DescribeTask(engine=settings, images=images, prompt=prompt, sampling=sampling)
    try:
        outcomes = feed_frames(
            frames_until(paths, time.monotonic() + args.budget_s), task.plan,
            connect=connect, reset=reset, load=partial(load_image, settings=images), stats=stats,
        )
        failures = sum(1 for _, rows in outcomes for row in rows
                       if not row.outcomes or row.outcomes[0] is None
                       or isinstance(row.outcomes[0].outcome, BaseException))
    finally:
        close()
    return {"engine": backend, "placement": args.placement, "engine_start_s": round(start_s, 1),
            "failed_rows": failures, **stats.to_dict(),
            "step_fraction": stats.step_s / stats.wall_s if stats.wall_s else 0}


def engine_connection(settings, images, placement: str):
    """(connect, reset, close) for an engine built and loaded now: in an engine server for
    GPU 0 owned by this process (``server``), or in this process (``worker``)."""
    if placement == "worker":
        from udfs.engines import create_engine
        from udfs.engines.stream import open_stream

        engine = create_engine(settings, images)
        return (lambda: open_stream(engine)), (lambda: None), engine.shutdown
    from udfs.engines.server.client import ServerLink
    from udfs.engines.server.protocol import ProcessId

    link = ServerLink(settings, images, None, ("0",), owner=ProcessId.of(os.getpid()),
                      task={"smoke": True})
    link.connect().close()  # start the server and load its engine before the clock runs
    return link.connect, link.reset, partial(stop_and_wait, link)


def stop_and_wait(link, timeout_s: float = 120.0) -> None:
    """Stop the link's server and wait until its slot lock is free, so that the next engine's
    server can take the same GPU (a server holds the lock until it has exited)."""
    import fcntl

    link.stop_server()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fd = os.open(link.address.lock, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.2)
        finally:
            os.close(fd)  # closing the descriptor releases a lock taken on it
    raise TimeoutError(f"the engine server at {link.address.socket} did not stop in {timeout_s}s")


def device_facts() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU run)"
    facts = {"gpu": gpu, "torch": torch.__version__,
             "cuda": torch.version.cuda, "python": platform.python_version()}
    if importlib.util.find_spec("vllm") is not None:
        import vllm

        facts["vllm"] = vllm.__version__
    return facts


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| engine | images | images/s | engine-busy | in engine step | output tok/s | "
             "cached/prompt | engine start s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ratio = r["cached_prompt_ratio"]
        lines.append(
            f"| {r['engine']} | {r['rows']} | **{r['images_per_s']:.1f}** | "
            f"{r['busy_fraction']:.2f} | {r['step_fraction']:.2f} | "
            f"{r['completion_tokens_per_s']:.0f} | {'-' if ratio is None else f'{ratio:.2f}'} | "
            f"{r['engine_start_s']} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="distinct synthetic thumbnails")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--max-num-seqs", type=int, default=256, help="vLLM requests in flight")
    parser.add_argument("--images-per-call", type=int, default=16,
                        help="transformers: images per generate call")
    parser.add_argument("--budget-s", type=float, default=60.0,
                        help="seconds of feeding per engine (then in-flight requests finish)")
    parser.add_argument("--kv-cache-mib", type=int, default=KV_CACHE_MIB, help="vLLM KV cache")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder [a temp dir]")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run even without CUDA (to check this script; not GPU figures)")
    parser.add_argument("--placement", choices=("server", "worker"), default="server",
                        help="where the engine runs: its GPU's engine server (production on "
                        "GPUs) or this process")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--plan", action="store_true",
                        help="import what a run needs and list the engines; run nothing")
    parser.add_argument("--preflight", action="store_true",
                        help="check driver, compiler, headers and vLLM; exit 2 on a blocker")
    parser.add_argument("--allow-no-vllm", action="store_true",
                        help="--preflight: a machine without vLLM runs transformers only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_modules()
    if missing:
        print(f"gpu_smoke: missing Python modules {missing}: pip install -e '.[hf]'")
        return 2
    if args.preflight:
        return preflight(args.allow_no_vllm)
    if args.plan:
        import jobs.demo.run  # noqa: E401, F401

        print(f"gpu_smoke plan: engines {engines_available()}; CUDA: {cuda_problem() or 'ok'}")
        return 0
    problem = cuda_problem()
    if problem and not args.allow_cpu:
        print(f"gpu_smoke: {problem}; nothing to measure on this machine, exiting.")
        return 0
    from udfs.engines.vllm_env import apply_vllm_env

    apply_vllm_env()
    from jobs.demo.run import make_sample_images
    from jobs.demo.tiny_model import make_tiny_model

    work = args.work or Path(tempfile.mkdtemp(prefix="candid-gpu-smoke-"))
    os.environ.setdefault("VLLM_CACHE_ROOT", str(work / "cache" / "vllm"))
    model_dir = make_tiny_model(work / "tiny-qwen2-vl")
    paths = [str(p) for p in make_sample_images(work / "images", count=args.images, seed=3).paths]
    results = [run_engine(backend, model_dir, paths, args, on_gpu=problem is None)
               for backend in engines_available()]
    print(table(results))
    report = {
        "benchmark": "gpu_smoke",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/gpu_smoke.py", *(argv or sys.argv[1:])]),
        "device": device_facts(), "settings": {k: str(v) for k, v in vars(args).items()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
