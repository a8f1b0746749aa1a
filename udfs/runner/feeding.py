"""Streamed feeding: keep the engine full while images for upcoming rows are prepared.

The old loop decoded ``batch_size`` images, generated them, waited for the slowest, and only
then decoded the next batch: the engine idled while images decoded and in every batch's tail.
``feed_frames`` instead

* reads, decodes and resizes upcoming images in a small thread pool (``PrepQueue``), at most
  ``max_waiting`` of them loaded or loading at a time (bounded memory);
* keeps ``stream.depth`` requests submitted to the engine and tops them up as requests finish,
  waiting for an image only when fewer than ``stream.capacity`` are in flight;
* pulls input frames ahead as needed, and hands back one list of outcomes per input frame, in
  input order, as soon as every row of that frame (and of every frame before it) is done;
* rebuilds a dead engine once and resubmits what was in flight; a second death in a row (no
  request finished in between) fails the task;
* fills ``FeedStats``: wall, engine-busy and step time, rows, tokens.

No Spark and no result columns here: ``udfs.runner.describe`` turns outcomes into result rows.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from udfs.engines.base import EngineDeadError, Generation, RequestStream
from udfs.images.prepare import PreparedImage

Loader = Callable[[str], PreparedImage]
Connect = Callable[[], RequestStream]


@dataclass
class FeedStats:
    """What one partition's feeding cost and produced. Pure numbers: the Spark adapter may hand
    it to the driver (``on_stats``), tests and benchmarks read it directly.

    ``wall_s`` runs from the first input frame asked for to the last result frame handed
    back (time Spark spends between frames included). ``busy_s`` counts time with at least one
    request submitted and not finished (for batch-wise engines this includes filling a batch);
    ``step_s`` time inside the engine's ``poll``: for an in-process engine (vLLM here, and the
    transformers engine) the share of wall time the engine actually computed; ``wait_image_s``
    time blocked on an image that was not decoded yet.
    """

    wall_s: float = 0.0
    busy_s: float = 0.0
    step_s: float = 0.0
    wait_image_s: float = 0.0
    rows: int = 0
    requests: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int | None = None
    completion_tokens: int = 0
    engine_rebuilds: int = 0
    max_images_waiting: int = 0

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

    def add_generation(self, generation: Generation) -> None:
        self.prompt_tokens += generation.prompt_tokens
        self.completion_tokens += generation.completion_tokens
        if generation.cached_prompt_tokens is not None:
            self.cached_prompt_tokens = (
                (self.cached_prompt_tokens or 0) + generation.cached_prompt_tokens
            )

    @classmethod
    def combined(cls, parts: Iterable[FeedStats]) -> FeedStats:
        """Sums over partitions (e.g. a chunk's): seconds add up across Python workers, so the
        combined rates are per worker and ``busy_fraction`` is the workers' average."""
        total = cls()
        for part in parts:
            for name in ("wall_s", "busy_s", "step_s", "wait_image_s", "rows", "requests",
                         "failed_requests", "prompt_tokens", "completion_tokens",
                         "engine_rebuilds"):
                setattr(total, name, getattr(total, name) + getattr(part, name))
            if part.cached_prompt_tokens is not None:
                total.cached_prompt_tokens = (
                    (total.cached_prompt_tokens or 0) + part.cached_prompt_tokens
                )
            total.max_images_waiting = max(total.max_images_waiting, part.max_images_waiting)
        return total

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeedStats:
        """The inverse of ``to_dict`` (derived rates are ignored)."""
        return cls(**{name: values[name] for name in cls.__dataclass_fields__ if name in values})

    def to_dict(self) -> dict[str, float | int | None]:
        """The counters and the derived rates, e.g. for a log line or an MLflow metric."""
        derived = ("images_per_s", "prompt_tokens_per_s", "completion_tokens_per_s",
                   "busy_fraction", "cached_prompt_ratio")
        return {**asdict(self), **{name: getattr(self, name) for name in derived}}


@dataclass
class RowOutcome:
    """One input row's result: its prepared image (pixels dropped once submitted), and the
    engine's outcome and latency (submit -> finished) when it reached the engine."""

    prepared: PreparedImage
    outcome: Generation | BaseException | None = None
    latency_ms: float | None = None


@dataclass
class _Slot:
    """An input frame whose rows are not all done yet."""

    frame: pd.DataFrame
    rows: list[RowOutcome | None]
    missing: int


class PrepQueue:
    """Prepares images for upcoming rows in a thread pool and hands them out in row order.

    At most ``cap`` images are loaded or loading at any time, whatever the engine's pace: the
    memory held by decoded images waiting for the engine stays bounded. ``threads=0`` loads
    inline when a row is queued (for debugging and deterministic tests).
    """

    def __init__(self, load: Loader, threads: int, cap: int):
        if cap < 1:
            raise ValueError(f"cap must be at least 1, got {cap}")
        self._load, self._cap = load, cap
        self._pool = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="candid-prep")
            if threads > 0 else None
        )
        self._items: deque[tuple[int, Future]] = deque()
        self.max_waiting = 0

    def __len__(self) -> int:
        return len(self._items)

    def has_room(self) -> bool:
        return len(self._items) < self._cap

    def put(self, key: int, path: str) -> None:
        if self._pool is not None:
            future = self._pool.submit(self._load, path)
        else:
            future = Future()
            try:
                future.set_result(self._load(path))
            except Exception as err:  # noqa: BLE001 - re-raised by take(), like a pool's future
                future.set_exception(err)
        self._items.append((key, future))
        self.max_waiting = max(self.max_waiting, len(self._items))

    def head_ready(self) -> bool:
        return bool(self._items) and self._items[0][1].done()

    def take(self) -> tuple[int, PreparedImage]:
        """The next row's image, waiting for it if needed. ``load`` raising is a bug, not a bad
        image (those are statuses), so it propagates."""
        key, future = self._items.popleft()
        return key, future.result()

    def close(self) -> None:
        for _, future in self._items:
            future.cancel()
        self._items.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class _Feeder:
    """The loop behind ``feed_frames``; one instance per partition."""

    def __init__(
        self, frames: Iterator[pd.DataFrame], connect: Connect, reset: Callable[[], None],
        prep: PrepQueue, stats: FeedStats,
    ):
        self._connect, self._reset, self._prep, self.stats = connect, reset, prep, stats
        self._slots: deque[_Slot] = deque()
        self._where: dict[int, tuple[_Slot, int]] = {}
        self._rows = self._row_source(frames)
        self._rows_done = False
        self._stream: RequestStream | None = None
        self._outstanding: dict[int, tuple[Any, float]] = {}  # key -> (image, submitted at)
        self._deaths: list[EngineDeadError] = []
        self._busy_since: float | None = None

    def run(self) -> Generator[tuple[pd.DataFrame, list[RowOutcome]], None, None]:
        started = time.perf_counter()
        try:
            while self._advance():
                yield from self._completed()
            yield from self._completed()
        finally:
            self._prep.close()
            if self._stream is not None:
                self._stream.close()
        self._mark_busy()
        self.stats.wall_s = time.perf_counter() - started
        self.stats.max_images_waiting = self._prep.max_waiting

    def _row_source(self, frames: Iterator[pd.DataFrame]) -> Iterator[tuple[int, str]]:
        keys = itertools.count()
        for frame in frames:
            slot = _Slot(frame=frame, rows=[None] * len(frame), missing=len(frame))
            self._slots.append(slot)
            for index, path in enumerate(frame["path"]):
                key = next(keys)
                self._where[key] = (slot, index)
                yield key, "" if path is None else str(path)

    def _advance(self) -> bool:
        """Top up, feed, and let the engine work once; False when every row is done."""
        self._top_up()
        self._feed_engine()
        if self._outstanding:
            self._poll()
            return True
        # Nothing in flight after feeding means no image was waiting and no row was left.
        return bool(self._prep) or not self._rows_done

    def _top_up(self) -> None:
        while not self._rows_done and self._prep.has_room():
            try:
                key, path = next(self._rows)
            except StopIteration:
                self._rows_done = True
                return
            self._prep.put(key, path)

    def _feed_engine(self) -> None:
        """Submit prepared images until ``depth`` are in flight. Wait for a decode only when the
        engine would otherwise run below ``capacity``: stepping beats idling."""
        while self._prep:
            stream = self._stream
            if stream is not None and len(self._outstanding) >= stream.depth:
                return
            capacity = stream.capacity if stream is not None else 1
            if not self._prep.head_ready() and len(self._outstanding) >= capacity:
                return
            waited = time.perf_counter()
            key, item = self._prep.take()
            self.stats.wait_image_s += time.perf_counter() - waited
            slot, index = self._where[key]
            # The pixels go to the engine; the row keeps only the status and the metrics.
            stripped = PreparedImage(item.status, item.message, None, item.metrics)
            slot.rows[index] = RowOutcome(stripped)
            if item.ok:
                self.stats.requests += 1
                self._submit(key, item.image, time.perf_counter())
            else:
                self._finish(key, None, None)
            # Only now: an image taken but not yet submitted still counts against the cap.
            self._top_up()

    def _submit(self, key: int, image: Any, submitted_at: float) -> None:
        self._outstanding[key] = (image, submitted_at)
        self._mark_busy()
        try:
            if self._stream is None:
                self._stream = self._connect()
            self._stream.submit(key, image)
        except EngineDeadError as err:
            self._engine_died(err)

    def _poll(self) -> None:
        assert self._stream is not None
        started = time.perf_counter()
        try:
            results = self._stream.poll()
        except EngineDeadError as err:
            self.stats.step_s += time.perf_counter() - started
            self._engine_died(err)
            return
        finished_at = time.perf_counter()
        self.stats.step_s += finished_at - started
        for key, outcome in results:
            _, submitted_at = self._outstanding.pop(key)
            if isinstance(outcome, Generation):
                self._deaths.clear()  # the engine served a request: deaths are no longer "in a row"
            self._finish(key, outcome, (finished_at - submitted_at) * 1000.0)
        self._mark_busy()

    def _engine_died(self, err: EngineDeadError) -> None:
        """Rebuild the engine once and resubmit everything in flight (oldest first); a second
        death before any request finished fails the task."""
        self._deaths.append(err)
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        self._reset()
        if len(self._deaths) >= 2:
            raise RuntimeError(
                f"engine failed fatally twice in a row (first: {self._deaths[0]}; then: {err}); "
                "failing the task so Spark can retry it on a fresh worker"
            ) from err
        self.stats.engine_rebuilds += 1
        in_flight = sorted(self._outstanding.items())
        self._outstanding.clear()
        for key, (image, submitted_at) in in_flight:
            self._submit(key, image, submitted_at)

    def _finish(
        self, key: int, outcome: Generation | BaseException | None, latency_ms: float | None
    ) -> None:
        slot, index = self._where.pop(key)
        row = slot.rows[index]
        assert row is not None
        row.outcome, row.latency_ms = outcome, latency_ms
        slot.missing -= 1
        self.stats.rows += 1
        if isinstance(outcome, Generation):
            self.stats.add_generation(outcome)
        elif isinstance(outcome, BaseException):
            self.stats.failed_requests += 1

    def _completed(self) -> Iterator[tuple[pd.DataFrame, list[RowOutcome]]]:
        while self._slots and self._slots[0].missing == 0:
            slot = self._slots.popleft()
            yield slot.frame, [row for row in slot.rows if row is not None]

    def _mark_busy(self) -> None:
        now = time.perf_counter()
        if self._outstanding and self._busy_since is None:
            self._busy_since = now
        elif not self._outstanding and self._busy_since is not None:
            self.stats.busy_s += now - self._busy_since
            self._busy_since = None


def feed_frames(
    frames: Iterator[pd.DataFrame],
    connect: Connect,
    reset: Callable[[], None],
    load: Loader,
    *,
    prep_threads: int = 2,
    max_waiting: int = 64,
    stats: FeedStats | None = None,
) -> Generator[tuple[pd.DataFrame, list[RowOutcome]], None, None]:
    """Describe-agnostic streamed feeding of every row of ``frames`` (which need a ``path``).

    Args:
        frames: input frames; pulled ahead as far as the engine's depth needs.
        connect: returns a stream on the current engine (building the engine if needed); called
            on the first image that decodes, and again after ``reset``.
        reset: discards a dead engine so that ``connect`` builds a new one.
        load: path -> ``PreparedImage`` (``udfs.images.prepare.load_image`` with the run's
        settings);
            runs in ``prep_threads`` background threads.
        prep_threads: decoding threads; 0 decodes inline.
        max_waiting: cap on images loaded or loading and not yet handed to the engine.
        stats: filled in place; complete once the iterator is exhausted.

    Yields:
        ``(frame, outcomes)`` per input frame, in input order, one outcome per row in row order.

    Raises:
        RuntimeError: the engine died twice in a row.
    """
    prep = PrepQueue(load, prep_threads, max_waiting)
    feeder = _Feeder(frames, connect, reset, prep, stats if stats is not None else FeedStats())
    return feeder.run()


def engine_metrics(stats: FeedStats, prefix: str = "") -> dict[str, float]:
    """The feeding figures worth a chart: rates per Python worker (seconds add up across
    workers), engine-busy share, share of time in the engine's step, cached prompt share."""
    wall = stats.wall_s
    figures = {
        "engine_busy_fraction": stats.busy_fraction,
        "engine_step_fraction": stats.step_s / wall if wall > 0 else 0.0,
        "images_per_s_per_worker": stats.images_per_s,
        "prompt_tokens_per_s_per_worker": stats.prompt_tokens_per_s,
        "completion_tokens_per_s_per_worker": stats.completion_tokens_per_s,
        "engine_rebuilds": float(stats.engine_rebuilds),
    }
    if stats.cached_prompt_ratio is not None:
        figures["cached_prompt_ratio"] = stats.cached_prompt_ratio
    return {f"{prefix}{name}": value for name, value in figures.items()}
