"""A simulated GPU engine for the fleet benchmark: fixed concurrency, fixed service time per
request, served by sleeping (no CPU), so a 2-core machine can stand in for a fleet of GPUs.

Each engine serves at most ``capacity`` requests at once; a request admitted to a free slot
finishes ``service_s`` later (``service_s x slow`` on the GPU named ``slow_gpu``). A freed slot
is refilled only when the feeder next submits or polls, as on a real engine, so feeding gaps
show up as idle slots. Busy time is slot-time: an engine is fully busy only with all its slots
taken, and ``busy_s`` adds up ``service_s / capacity`` per request served.

Every engine appends what it did to ``<log_dir>/<gpu>-<pid>-<n>.jsonl``: one ``build`` line,
then one ``served`` line per poll with the requests that finished (admitted, finished times).
``fleet_figures`` turns those files into the benchmark's figures (``benchmarks.fleet_timeline``
into its timeline). A request cannot name its chunk: on a GPU executor the engine runs in the
engine server process of its GPU (``udfs.engines.server``), which has no Spark task context.

Settings travel in ``EngineSettings.model`` (a free string for fakes):
``"fleet:log_dir=/x;capacity=8;service_s=0.2;slow_gpu=2;slow=1.3"``.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jobs.describe.ledger import merged, tail_seconds
from udfs.engines.base import Engine, Generation, Request, RequestStream, StreamResult

_instances = itertools.count()


def fleet_model(**params: Any) -> str:
    """The ``engine.model`` string for these parameters."""
    return "fleet:" + ";".join(f"{k}={v}" for k, v in params.items())


def _params(model: str) -> dict[str, str]:
    body = model.removeprefix("fleet:")
    return dict(part.split("=", 1) for part in body.split(";") if part)


def _task_gpu() -> str:
    """The GPU this Spark task was given (Candid pins CUDA_VISIBLE_DEVICES from it)."""
    pinned = os.environ.get("CUDA_VISIBLE_DEVICES")
    if pinned:
        return pinned
    from pyspark import TaskContext

    context = TaskContext.get()
    gpus = context.resources().get("gpu") if context is not None else None
    return gpus.addresses[0] if gpus is not None else "none"


class PacedEngine(Engine):
    """The simulated GPU (see the module docstring)."""

    def __init__(self, settings, image_settings, gpu: str | None = None):
        super().__init__(settings, image_settings)
        params = _params(settings.model)
        self.gpu = gpu if gpu is not None else _task_gpu()
        self.capacity = int(params.get("capacity", 8))
        slow = float(params.get("slow", 1.0)) if params.get("slow_gpu") == self.gpu else 1.0
        self.service_s = float(params.get("service_s", 0.2)) * slow
        folder = Path(params["log_dir"])
        folder.mkdir(parents=True, exist_ok=True)
        self._log = folder / f"{self.gpu}-{os.getpid()}-{next(_instances)}.jsonl"
        self._write({"event": "build", "gpu": self.gpu, "pid": os.getpid(), "t": time.time(),
                     "capacity": self.capacity, "service_s": self.service_s})

    def _write(self, record: dict[str, Any]) -> None:
        with self._log.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")

    def open_stream(self) -> PacedStream:
        return PacedStream(self)

    def generate(self, images, prompt, sampling) -> list[Generation]:
        """Batch-wise fallback (bisection of a failing batch): one service time per batch."""
        time.sleep(self.service_s)
        return [_generation(time.monotonic()) for _ in images]

    def shutdown(self) -> None:
        """Nothing to release."""


class PacedStream(RequestStream):
    """``capacity`` slots; each admitted request finishes ``service_s`` later."""

    def __init__(self, engine: PacedEngine):
        self._engine = engine
        self.capacity = engine.capacity
        self.depth = engine.capacity * 2
        self._waiting: deque[int] = deque()
        self._running: list[tuple[float, int, float, float]] = []  # finish, key, admitted, wall

    @property
    def in_flight(self) -> int:
        return len(self._waiting) + len(self._running)

    def submit(self, request: Request) -> None:
        self._waiting.append(request.key)
        self._admit()

    def poll(self) -> list[StreamResult]:
        self._admit()
        if not self._running:
            return []
        delay = self._running[0][0] - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the simulated GPU computes; the CPU is free
        now, done = time.monotonic(), []
        while self._running and self._running[0][0] <= now:
            finish, key, admitted, wall = heapq.heappop(self._running)
            done.append((key, admitted, finish, wall))
        self._admit()
        served = [[wall, wall + (finish - admitted)] for _, admitted, finish, wall in done]
        self._engine._write({"event": "served", "gpu": self._engine.gpu, "requests": served})
        return [(key, _generation(admitted)) for key, admitted, _, _ in done]

    def _admit(self) -> None:
        now, wall = time.monotonic(), time.time()
        while self._waiting and len(self._running) < self.capacity:
            key = self._waiting.popleft()
            heapq.heappush(self._running, (now + self._engine.service_s, key, now, wall))

    def close(self) -> None:
        self._waiting.clear()
        self._running.clear()


def _generation(scheduled_at: float) -> Generation:
    return Generation(text="a simulated description", token_ids=(1, 2, 3, 4),
                      finish_reason="stop", prompt_tokens=80, scheduled_at=scheduled_at)


def make_paced_engine(settings, image_settings) -> Engine:
    """Module level, so Spark pickles it by reference."""
    return PacedEngine(settings, image_settings)


def read_records(log_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(log_dir.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line]


def fleet_figures(records: Iterable[dict[str, Any]], engines: int) -> dict[str, Any]:
    """Fleet utilization = engine-busy seconds / (engines x wall time from the first request
    admitted to the last result), busy being slot-time / capacity; plus builds per GPU, each
    GPU's busy seconds and requests, and the tail share: the time with fewer than all engines
    having a request in a slot."""
    builds: dict[str, int] = {}
    capacity: dict[str, int] = {}
    spans: dict[str, list[list[float]]] = {}
    for record in records:
        gpu = record["gpu"]
        if record["event"] == "build":
            builds[gpu] = builds.get(gpu, 0) + 1
            capacity[gpu] = record["capacity"]
        else:
            spans.setdefault(gpu, []).extend(record["requests"])
    everything = [span for gpu_spans in spans.values() for span in gpu_spans]
    if not everything:
        return {"fleet_utilization": 0.0, "engines": engines, "builds_per_gpu": builds}
    start = min(s for s, _ in everything)
    end = max(e for _, e in everything)
    wall = end - start
    busy = {gpu: sum(e - s for s, e in gpu_spans) / capacity[gpu]
            for gpu, gpu_spans in spans.items()}
    return {
        "fleet_utilization": round(sum(busy.values()) / (engines * wall), 4),
        "engines": engines,
        "wall_s": round(wall, 2),
        "busy_s_per_gpu": {gpu: round(b, 2) for gpu, b in sorted(busy.items())},
        "requests_per_gpu": {gpu: len(s) for gpu, s in sorted(spans.items())},
        "builds_per_gpu": dict(sorted(builds.items())),
        "tail_share": round(_idle_engines_s(spans, engines, start, end) / wall, 4),
        "profile": _idle_profile(spans, busy, engines, start, end),
    }


def _idle_engines_s(spans: dict[str, list[list[float]]], engines: int, start: float,
                    end: float) -> float:
    """Seconds with fewer than ``engines`` engines holding a request; an engine that never
    served one counts as idle from ``start`` to ``end``."""
    intervals = {gpu: [(s, e) for s, e in gpu_spans] for gpu, gpu_spans in spans.items()}
    if len(intervals) < engines:
        return end - start
    return tail_seconds(intervals, engines)


def _idle_profile(spans: dict[str, list[list[float]]], busy: dict[str, float], engines: int,
                  start: float, end: float) -> dict[str, float]:
    """Where the engine-seconds that were not busy went: no engine had a request (the GPUs
    waited for the driver: commits, job starts); some engines had none while others did (a
    chunk's tail, a slow GPU, task starts); an engine had requests but free slots (a task's
    ramp-up and drain, feeding gaps)."""
    active = {gpu: sum(e - s for s, e in merged((s, e) for s, e in gpu_spans))
              for gpu, gpu_spans in spans.items()}
    intervals = {gpu: [(s, e) for s, e in gpu_spans] for gpu, gpu_spans in spans.items()}
    none_busy = tail_seconds(intervals, 1)  # time with fewer than one engine holding a request
    idle = engines * (end - start) - sum(active.values())
    return {
        "idle_engine_s_all_engines_idle": round(engines * none_busy, 1),
        "idle_engine_s_some_engines_idle": round(idle - engines * none_busy, 1),
        "underfilled_slots_engine_s": round(sum(active.values()) - sum(busy.values()), 1),
    }
