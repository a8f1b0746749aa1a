"""Measuring instruments for ``benchmarks/bench_scale.py``: peak memory of the driver, seconds
per step of a describe run, and Delta's own MERGE figures from a table's history."""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from typing import Any

# (step, module, function, how to find the chunk number in its arguments or None).
STEPS: tuple[tuple[str, str, str, Callable[[tuple], int] | None], ...] = (
    ("plan_pending", "jobs.describe.run", "plan_pending", None),
    ("stage", "jobs.describe.chunks", "stage_chunk", lambda args: args[3]),
    ("merge", "jobs.describe.commit", "merge_staged", lambda args: args[4]),
    ("drop", "jobs.describe.commit", "drop_staged", lambda args: args[3]),
    ("write_back", "jobs.describe.run", "write_back_chunk", lambda args: args[2].index),
    ("final_write_back", "jobs.describe.run", "write_back", None),
)
MIB = 1 << 20


class PeakRss:
    """Samples the resident memory of this process (the driver's Python) and of its JVM child
    (in local mode the JVM is driver and executors at once) every ``interval`` seconds."""

    def __init__(self, interval: float = 0.1):
        import psutil

        self._me = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.python = self.jvm = 0

    def _jvm_rss(self) -> int:
        import psutil

        total = 0
        for child in self._me.children(recursive=True):
            try:
                if child.name() == "java":
                    total += child.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.python = max(self.python, self._me.memory_info().rss)
            self.jvm = max(self.jvm, self._jvm_rss())
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.python = max(self.python, self._me.memory_info().rss)

    def figures(self) -> dict[str, int]:
        return {"driver_python_peak_mib": round(self.python / MIB),
                "driver_jvm_peak_mib": round(self.jvm / MIB)}


class StepTimer:
    """Wraps the module functions a describe run calls for each step (``steps``, as in
    ``STEPS``) and records ``(step, chunk, seconds)`` per call, and in ``spans`` each call's
    wall-clock start and end (``time.time``, to line up with other processes' records);
    restores the functions on exit."""

    def __init__(self, steps: tuple[tuple[str, str, str, Callable[[tuple], int] | None], ...]
                 = STEPS) -> None:
        self.calls: list[tuple[str, int | None, float]] = []
        self.spans: list[dict[str, Any]] = []
        self._steps = steps
        self._saved: list[tuple[Any, str, Callable]] = []

    def __enter__(self) -> StepTimer:
        for step, module_name, name, chunk_of in self._steps:
            module = importlib.import_module(module_name)
            original = getattr(module, name)
            self._saved.append((module, name, original))
            setattr(module, name, self._timed(step, original, chunk_of))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for module, name, original in self._saved:
            setattr(module, name, original)

    def _timed(self, step: str, original: Callable, chunk_of: Callable | None) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started, wall = time.perf_counter(), time.time()
            try:
                return original(*args, **kwargs)
            finally:
                chunk = chunk_of(args) if chunk_of else None
                self.calls.append((step, chunk, time.perf_counter() - started))
                self.spans.append({"step": step, "chunk": chunk, "start": wall,
                                   "end": time.time()})

        return timed

    def seconds(self, step: str) -> float:
        return round(sum(s for name, _, s in self.calls if name == step), 2)

    def per_chunk(self) -> list[dict[str, Any]]:
        """Seconds of each step per described chunk (chunk numbers from 0), in chunk order."""
        chunks: dict[int, dict[str, Any]] = {}
        for step, chunk, seconds in self.calls:
            if chunk is not None and chunk >= 0:
                row = chunks.setdefault(chunk, {"chunk": chunk})
                row[f"{step}_s"] = round(row.get(f"{step}_s", 0.0) + seconds, 2)
        return [chunks[c] for c in sorted(chunks)]


def merge_metrics(spark: Any, table: str, after: int) -> list[dict[str, int]]:
    """Delta's operation metrics of each MERGE committed to ``table`` after version ``after``,
    oldest first (a MERGE that changed nothing committed nothing and is not listed)."""
    from jobs.tables.delta_io import delta_table, table_exists

    if not table_exists(spark, table):
        return []
    history = (
        delta_table(spark, table).history()
        .where(f"version > {int(after)} AND operation = 'MERGE'").orderBy("version").collect()
    )
    return [{k: int(v) for k, v in h["operationMetrics"].items()} for h in history]
