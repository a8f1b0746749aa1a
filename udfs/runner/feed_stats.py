"""``FeedStats``: what one partition's feeding cost and produced, in plain numbers.

The Spark adapter hands them to the driver (``on_stats``), which sums a chunk's partitions
(``FeedStats.combined``) and logs ``udfs.runner.feeding.engine_metrics``; tests and benchmarks
read them directly. Time-weighted figures are kept as integrals (e.g. request-seconds in flight)
so that partitions add up; the means are derived.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from udfs.engines.base import EngineSample, Generation


def _add(a: Any, b: Any) -> Any:
    """Sum, where None means unknown: known + unknown is the known part."""
    if a is None:
        return b
    return a if b is None else a + b


def _combine(rule: Callable[[Any, Any], Any]) -> dict[str, Callable[[Any, Any], Any]]:
    return {"combine": rule}


@dataclass
class FeedStats:
    """What one partition's feeding cost and produced.

    ``wall_s`` runs from the first input frame asked for to the last result frame handed
    back (time Spark spends between frames included). ``busy_s`` counts time with at least one
    request submitted and not finished (for batch-wise engines this includes filling a batch);
    ``step_s`` time inside the engine's ``poll``: for an in-process engine (vLLM here, and the
    transformers engine) the share of wall time the engine actually computed; ``wait_image_s``
    time blocked on an image that was not decoded yet.

    Requests in flight, as the feeder sees them (submitted, not yet back): ``in_flight_s`` is
    their integral over wall time (request-seconds), ``in_flight_peak`` the most at once.
    ``queue_wait_s`` sums, over the ``queue_waits`` requests whose engine said when it first
    scheduled them, the wait from submit to that moment.

    Live engine figures, from the engine's own scheduler after each step (vLLM; None or 0 for
    batch-wise engines): ``engine_sampled_s`` is the step time they cover; ``engine_running_s``
    and ``engine_waiting_s`` integrate the engine's running and waiting requests over it,
    ``kv_cache_usage_s`` its KV-cache usage (0..1); ``preemptions`` counts requests vLLM evicted
    to free KV cache (each one recomputes its prompt later).
    """

    wall_s: float = 0.0
    busy_s: float = 0.0
    step_s: float = 0.0
    wait_image_s: float = 0.0
    rows: int = 0
    requests: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int | None = field(default=None, metadata=_combine(_add))
    completion_tokens: int = 0
    engine_rebuilds: int = 0
    max_images_waiting: int = field(default=0, metadata=_combine(max))
    in_flight_s: float = 0.0
    in_flight_peak: int = field(default=0, metadata=_combine(max))
    queue_wait_s: float = 0.0
    queue_waits: int = 0
    engine_sampled_s: float = 0.0
    engine_running_s: float = 0.0
    engine_running_peak: int = field(default=0, metadata=_combine(max))
    engine_waiting_s: float = 0.0
    kv_cache_usage_s: float = 0.0
    kv_cache_usage_max: float | None = field(default=None, metadata=_combine(
        lambda a, b: b if a is None else a if b is None else max(a, b)))
    preemptions: int | None = field(default=None, metadata=_combine(_add))

    @property
    def images_per_s(self) -> float:
        """Result rows per second of wall time."""
        return self.rows / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def completion_tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def busy_fraction(self) -> float:
        """Share of wall time during which the engine had at least one request in flight."""
        return min(1.0, self.busy_s / self.wall_s) if self.wall_s > 0 else 0.0

    @property
    def cached_prompt_ratio(self) -> float | None:
        """Prompt tokens served from the prefix cache / all prompt tokens (None: unknown)."""
        if self.cached_prompt_tokens is None or not self.prompt_tokens:
            return None
        return self.cached_prompt_tokens / self.prompt_tokens

    @property
    def in_flight_mean(self) -> float:
        """Requests in flight, averaged over wall time."""
        return self.in_flight_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def queue_wait_ms_mean(self) -> float | None:
        """Mean wait from submit to first scheduling (None: the engine cannot say)."""
        return 1000.0 * self.queue_wait_s / self.queue_waits if self.queue_waits else None

    @property
    def engine_running_mean(self) -> float | None:
        """Requests the engine ran, averaged over its steps' time (None: no scheduler figures)."""
        return self._per_sampled_s(self.engine_running_s)

    @property
    def engine_waiting_mean(self) -> float | None:
        """Requests waiting inside the engine, averaged like ``engine_running_mean``."""
        return self._per_sampled_s(self.engine_waiting_s)

    @property
    def kv_cache_usage_mean(self) -> float | None:
        """KV-cache usage (0..1), averaged like ``engine_running_mean``."""
        return self._per_sampled_s(self.kv_cache_usage_s)

    def _per_sampled_s(self, integral: float) -> float | None:
        return integral / self.engine_sampled_s if self.engine_sampled_s > 0 else None

    def add_generation(self, generation: Generation) -> None:
        self.prompt_tokens += generation.prompt_tokens
        self.completion_tokens += generation.completion_tokens
        if generation.cached_prompt_tokens is not None:
            self.cached_prompt_tokens = (
                (self.cached_prompt_tokens or 0) + generation.cached_prompt_tokens
            )

    def add_queue_wait(self, wait_s: float) -> None:
        self.queue_wait_s += wait_s
        self.queue_waits += 1

    def add_engine_sample(self, sample: EngineSample, step_s: float, new_preemptions: int) -> None:
        """One step's scheduler figures, weighted by the step's duration."""
        self.engine_sampled_s += step_s
        self.engine_running_s += sample.running * step_s
        self.engine_waiting_s += sample.waiting * step_s
        self.kv_cache_usage_s += sample.kv_cache_usage * step_s
        self.engine_running_peak = max(self.engine_running_peak, sample.running)
        self.kv_cache_usage_max = max(self.kv_cache_usage_max or 0.0, sample.kv_cache_usage)
        self.preemptions = (self.preemptions or 0) + new_preemptions

    @classmethod
    def combined(cls, parts: Iterable[FeedStats]) -> FeedStats:
        """Sums over partitions (e.g. a chunk's): seconds add up across Python workers, so the
        combined rates are per worker and ``busy_fraction`` is the workers' average; peaks and
        maxima are the largest of any partition."""
        total = cls()
        for part in parts:
            for spec in fields(cls):
                rule = spec.metadata.get("combine", _add)
                setattr(total, spec.name, rule(getattr(total, spec.name),
                                               getattr(part, spec.name)))
        return total

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeedStats:
        """The inverse of ``to_dict`` (derived rates are ignored)."""
        return cls(**{name: values[name] for name in cls.__dataclass_fields__ if name in values})

    def to_dict(self) -> dict[str, float | int | None]:
        """The counters and the derived rates, e.g. for a log line or an MLflow metric."""
        derived = ("images_per_s", "prompt_tokens_per_s", "completion_tokens_per_s",
                   "busy_fraction", "cached_prompt_ratio", "in_flight_mean",
                   "queue_wait_ms_mean", "engine_running_mean", "engine_waiting_mean",
                   "kv_cache_usage_mean")
        return {**asdict(self), **{name: getattr(self, name) for name in derived}}


# Keys ``task_record`` adds to a partition's ``FeedStats.to_dict()`` (the cost ledger,
# ``jobs.describe.ledger``): the Python worker holding the engine, and when the task ended.
ENGINE_KEY = "engine_worker"
ENDED_AT_KEY = "ended_at"


def task_record(stats: FeedStats) -> dict[str, Any]:
    """One engine task's stats as the driver collects them: ``stats.to_dict()`` plus which
    engine ran it (host and Python worker: one cached engine each) and its end (epoch s)."""
    return {**stats.to_dict(), ENGINE_KEY: f"{socket.gethostname()}:{os.getpid()}",
            ENDED_AT_KEY: time.time()}
