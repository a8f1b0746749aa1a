"""The cost ledger of a describe run: what the GPUs did per chunk and per run, from the engine
tasks' own records (``udfs.runner.feed_stats.task_record``: the Python worker that holds the
engine, when the task ended, how long it fed, its rows and tokens).

Figures (MLflow, ``chunk.``-prefixed with step = chunk, and for the whole run):

- ``images_per_s_per_engine``: rows / (span x engines), the span running from the first task's
  start to the last task's end;
- ``gpu_s_per_1000_images``: GPU slots held x span / rows x 1000 (what the run costs, idle
  slots included);
- ``tokens_per_s``: prompt plus completion tokens over the span;
- ``tail_share``: the share of the span with fewer than all slots running an engine task (a
  chunk's tail, a slow GPU, the driver's commits when chunks are not pipelined).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from udfs.runner.feed_stats import ENDED_AT_KEY, ENGINE_KEY, FeedStats

Interval = tuple[float, float]


@dataclass
class TaskLedger:
    """Engine tasks' intervals per engine, their rows and tokens; add chunk after chunk."""

    slots: int = 1  # GPU slots the run holds (jobs.cluster.gpu_layout.engine_slots)
    intervals: dict[str, list[Interval]] = field(default_factory=dict)
    rows: int = 0
    tokens: int = 0

    def add_tasks(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            end = float(record[ENDED_AT_KEY])
            start = end - float(record["wall_s"])
            self.intervals.setdefault(str(record[ENGINE_KEY]), []).append((start, end))
            self.rows += int(record["rows"])
            self.tokens += int(record["prompt_tokens"]) + int(record["completion_tokens"])

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """The ledger's figures (none without a task)."""
        slots = self.slots
        spans = [s for engine_spans in self.intervals.values() for s in engine_spans]
        if not spans or not self.rows:
            return {}
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
        span = max(last - first, 1e-9)
        engines = max(len(self.intervals), 1)
        figures = {
            "images_per_s_per_engine": self.rows / span / engines,
            "gpu_s_per_1000_images": slots * span / self.rows * 1000.0,
            "tokens_per_s": self.tokens / span,
            "tail_share": tail_seconds(self.intervals, slots) / span,
            "engines": float(engines),
        }
        return {f"{prefix}{name}": value for name, value in figures.items()}


def tail_seconds(intervals: Mapping[str, Sequence[Interval]], engines: int) -> float:
    """Seconds, from the first interval's start to the last one's end, during which fewer than
    ``engines`` engines were inside one of their intervals (a sweep over each engine's merged
    intervals). An engine with no interval at all counts as idle throughout."""
    events: list[tuple[float, int]] = []
    for spans in intervals.values():
        for start, end in merged(spans):
            events += [(start, 1), (end, -1)]
    if not events:
        return 0.0
    events.sort()
    short, active, last = 0.0, 0, events[0][0]
    for moment, change in events:
        if active < engines:
            short += moment - last
        active += change
        last = moment
    return short


def merged(spans: Iterable[Interval]) -> list[Interval]:
    """Overlapping or touching intervals joined, in order."""
    out: list[Interval] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def per_engine(records: Iterable[Mapping[str, Any]]) -> dict[str, FeedStats]:
    """The tasks' stats summed per engine (Python worker)."""
    tasks: dict[str, list[FeedStats]] = {}
    for record in records:
        tasks.setdefault(str(record[ENGINE_KEY]), []).append(FeedStats.from_dict(record))
    return {engine: FeedStats.combined(stats) for engine, stats in sorted(tasks.items())}


def engine_note(records: Iterable[Mapping[str, Any]]) -> str:
    """Live figures per engine for the progress line, from its finished tasks: requests in
    flight (mean), KV-cache usage (mean) and preemptions, where the engine reports them."""
    parts = []
    for engine, stats in per_engine(records).items():
        part = f"{engine.rsplit(':', 1)[-1]}: {stats.in_flight_mean:.1f} in flight"
        if stats.kv_cache_usage_mean is not None:
            part += f", KV cache {stats.kv_cache_usage_mean:.0%}"
        if stats.preemptions is not None:
            part += f", {stats.preemptions} preempted"
        parts.append(part)
    return "; ".join(parts)


def per_engine_metrics(records: Iterable[Mapping[str, Any]], prefix: str = "engine.") -> dict[
        str, float]:
    """The same figures per engine for MLflow (``engine.<host>-<pid>.<figure>``), plus its
    images/s."""
    figures: dict[str, float] = {}
    for engine, stats in per_engine(records).items():
        name = f"{prefix}{engine.replace(':', '-')}."
        figures[name + "images_per_s"] = stats.images_per_s
        figures[name + "in_flight_mean"] = stats.in_flight_mean
        if stats.kv_cache_usage_mean is not None:
            figures[name + "kv_cache_usage_mean"] = stats.kv_cache_usage_mean
        if stats.preemptions is not None:
            figures[name + "preemptions"] = float(stats.preemptions)
    return figures
