"""Streamed feeding: keep the engine full while images for upcoming rows are prepared.

Each input row asks the engine zero or more requests (its ``RowPlan``: one per prompt, all on
the row's image; describing asks one, the audit one per probe). ``feed_frames``

* reads, decodes and resizes the images of upcoming rows in a small thread pool
  (``udfs.runner.prep.PrepQueue``), once per row whatever its number of requests, at most
  ``max_waiting`` of them loaded or loading at a time (bounded memory); a row that asks
  nothing is not read at all;
* keeps ``stream.depth`` requests submitted to the engine and tops them up as requests finish,
  waiting for an image only when fewer than ``stream.capacity`` are in flight;
* pulls input frames ahead as needed, and hands back one list of row outcomes per input frame,
  in input order, as soon as every request of that frame (and of every frame before it) is
  done;
* rebuilds a dead engine once and resubmits what was in flight; a second death in a row (no
  request finished in between) fails the task;
* fills ``FeedStats``: wall, engine-busy and step time, rows, requests, tokens, requests in
  flight, queue waits and the engine's own scheduler figures.

No Spark and no result columns here: the task (``udfs.runner.task``) turns row outcomes into
output rows.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from udfs.engines.base import EngineDeadError, Generation, PromptCall, Request, RequestStream
from udfs.engines.failures import FailureLevel, classify_failure, worker_failure
from udfs.images.prepare import PreparedImage
from udfs.runner.feed_stats import FeedStats
from udfs.runner.prep import Loader, PrepQueue

Connect = Callable[[], RequestStream]
Planner = Callable[[pd.DataFrame], list["RowPlan"]]


@dataclass(frozen=True)
class RowPlan:
    """What one input row asks the engine: one request per call, each on the row's image.
    ``context`` is the task's own note for building the output row (the audit's probes)."""

    calls: tuple[PromptCall, ...]
    context: Any = None


@dataclass(frozen=True)
class RequestOutcome:
    """One request's result and timing (milliseconds of the feeder's monotonic clock).

    ``latency_ms`` spans submit -> finished: the engine's queue, the prompt's prefill and the
    decoding, while the engine serves other requests too. ``queue_wait_ms`` spans submit ->
    first scheduled, None when the engine cannot say; for a request resubmitted to a rebuilt
    engine both count from the first submit.
    """

    outcome: Generation | BaseException
    latency_ms: float
    queue_wait_ms: float | None


@dataclass
class RowOutcome:
    """One input row's result: its plan, its prepared image (pixels dropped once submitted;
    None when the row asked nothing, so nothing was read), and one outcome per call (None for
    each when the image failed, so nothing reached the engine)."""

    plan: RowPlan
    prepared: PreparedImage | None
    outcomes: list[RequestOutcome | None] = field(default_factory=list)


@dataclass
class _Slot:
    """An input frame whose rows are not all done yet."""

    frame: pd.DataFrame
    rows: list[RowOutcome | None]
    missing: int


@dataclass
class _OpenRow:
    """A row whose requests are not all back yet."""

    slot: _Slot
    index: int
    outcome: RowOutcome
    missing: int


class _Feeder:
    """The loop behind ``feed_frames``; one instance per partition."""

    def __init__(
        self, frames: Iterator[pd.DataFrame], plan: Planner, connect: Connect,
        reset: Callable[[], None], prep: PrepQueue, stats: FeedStats,
    ):
        self._connect, self._reset, self._prep, self.stats = connect, reset, prep, stats
        self._slots: deque[_Slot] = deque()
        self._open: dict[int, _OpenRow] = {}  # row key -> row
        self._rows = self._row_source(frames, plan)
        self._rows_done = False
        self._request_keys = itertools.count()
        self._owner: dict[int, tuple[int, int]] = {}  # request key -> (row key, call index)
        self._ready: deque[Request] = deque()  # requests of the row taken last, not yet submitted
        self._stream: RequestStream | None = None
        self._stream_preemptions = 0
        self._outstanding: dict[int, tuple[Request, float]] = {}  # key -> (request, submitted)
        self._deaths: list[EngineDeadError] = []
        self._ticked = time.monotonic()

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
        self._tick()
        self.stats.wall_s = time.perf_counter() - started
        self.stats.max_images_waiting = self._prep.max_waiting

    def _row_source(self, frames: Iterator[pd.DataFrame], plan: Planner
                    ) -> Iterator[tuple[int, str, RowPlan]]:
        keys = itertools.count()
        for frame in frames:
            plans = plan(frame)
            if len(plans) != len(frame):
                raise ValueError(f"the task planned {len(plans)} rows for a frame of {len(frame)}")
            slot = _Slot(frame=frame, rows=[None] * len(frame), missing=len(frame))
            self._slots.append(slot)
            for index, (path, row_plan) in enumerate(zip(frame["path"], plans, strict=True)):
                key = next(keys)
                self._open[key] = _OpenRow(slot, index, RowOutcome(row_plan, None), 0)
                yield key, "" if path is None else str(path), row_plan

    def _advance(self) -> bool:
        """Top up, feed, and let the engine work once; False when every row is done."""
        self._top_up()
        self._feed_engine()
        if self._outstanding:
            self._poll()
            return True
        # Nothing in flight after feeding means no image was waiting and no row was left.
        return bool(self._prep) or bool(self._ready) or not self._rows_done

    def _top_up(self) -> None:
        while not self._rows_done and self._prep.has_room():
            try:
                key, path, plan = next(self._rows)
            except StopIteration:
                self._rows_done = True
                return
            if plan.calls:
                self._prep.put(key, path)
            else:
                self._finish_row(key)  # nothing to ask: the image is not even read

    def _feed_engine(self) -> None:
        """Submit requests until ``depth`` are in flight. Wait for a decode only when the
        engine would otherwise run below ``capacity``: stepping beats idling."""
        while True:
            stream = self._stream
            if stream is not None and len(self._outstanding) >= stream.depth:
                return
            if self._ready:
                self.stats.requests += 1
                self._submit(self._ready.popleft(), time.monotonic())
            else:
                if not self._prep:
                    return
                capacity = stream.capacity if stream is not None else 1
                if not self._prep.head_ready() and len(self._outstanding) >= capacity:
                    return
                self._take_row()
            if not self._ready:
                # Only now: an image taken but not yet submitted in all its requests still
                # counts against the cap.
                self._top_up()

    def _take_row(self) -> None:
        """The next prepared row: its requests become ready, or it fails on its image."""
        waited = time.perf_counter()
        key, item = self._prep.take()
        self.stats.wait_image_s += time.perf_counter() - waited
        row = self._open[key]
        # The pixels go to the engine; the row keeps only the status and the metrics.
        row.outcome.prepared = PreparedImage(item.status, item.message, None, item.metrics)
        calls = row.outcome.plan.calls
        row.outcome.outcomes = [None] * len(calls)
        if not item.ok:
            self._finish_row(key)
            return
        row.missing = len(calls)
        for index, call in enumerate(calls):
            request = Request(next(self._request_keys), call, item.image)
            self._owner[request.key] = (key, index)
            self._ready.append(request)

    def _submit(self, request: Request, submitted_at: float) -> None:
        self._tick()
        self._outstanding[request.key] = (request, submitted_at)
        self.stats.in_flight_peak = max(self.stats.in_flight_peak, len(self._outstanding))
        try:
            if self._stream is None:
                self._stream = self._connect()
                self._stream_preemptions = 0
            self._stream.submit(request)
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
        step_s = time.perf_counter() - started
        self.stats.step_s += step_s
        self._sample_engine(self._stream, step_s)
        self._tick()
        finished_at = time.monotonic()
        for key, outcome in results:
            _, submitted_at = self._outstanding.pop(key)
            if isinstance(outcome, Generation):
                self._deaths.clear()  # the engine served a request: deaths are no longer "in a row"
            self._record(key, RequestOutcome(
                outcome, (finished_at - submitted_at) * 1000.0, self._queue_wait_ms(
                    outcome, submitted_at)))

    def _queue_wait_ms(self, outcome: Generation | BaseException, submitted_at: float
                       ) -> float | None:
        if not isinstance(outcome, Generation) or outcome.scheduled_at is None:
            return None
        wait_s = max(0.0, outcome.scheduled_at - submitted_at)
        self.stats.add_queue_wait(wait_s)
        return wait_s * 1000.0

    def _sample_engine(self, stream: RequestStream, step_s: float) -> None:
        sample = stream.engine_sample()
        if sample is None:
            return
        new = sample.preemptions - self._stream_preemptions
        self._stream_preemptions = sample.preemptions
        self.stats.add_engine_sample(sample, step_s, new)

    def _engine_died(self, err: EngineDeadError) -> None:
        """Rebuild the engine once and resubmit everything in flight (oldest first); a second
        death before any request finished fails the task. A death caused by a broken CUDA
        context fails the task at once: no engine can be rebuilt in this process."""
        if classify_failure(err) is FailureLevel.WORKER:
            raise worker_failure(err) from err
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
        self._tick()
        in_flight = sorted(self._outstanding.values(), key=lambda entry: entry[0].key)
        self._outstanding.clear()
        for request, submitted_at in in_flight:
            self._submit(request, submitted_at)

    def _record(self, request_key: int, result: RequestOutcome) -> None:
        row_key, index = self._owner.pop(request_key)
        row = self._open[row_key]
        row.outcome.outcomes[index] = result
        if isinstance(result.outcome, Generation):
            self.stats.add_generation(result.outcome)
        else:
            self.stats.failed_requests += 1
        row.missing -= 1
        if row.missing == 0:
            self._finish_row(row_key)

    def _finish_row(self, row_key: int) -> None:
        row = self._open.pop(row_key)
        row.slot.rows[row.index] = row.outcome
        row.slot.missing -= 1
        self.stats.rows += 1

    def _completed(self) -> Iterator[tuple[pd.DataFrame, list[RowOutcome]]]:
        while self._slots and self._slots[0].missing == 0:
            slot = self._slots.popleft()
            yield slot.frame, [row for row in slot.rows if row is not None]

    def _tick(self) -> None:
        """Account the time since the last change of the requests in flight (call before
        changing them): busy time, and request-seconds in flight."""
        now = time.monotonic()
        elapsed, self._ticked = now - self._ticked, now
        if self._outstanding:
            self.stats.busy_s += elapsed
            self.stats.in_flight_s += elapsed * len(self._outstanding)


def feed_frames(
    frames: Iterator[pd.DataFrame],
    plan: Planner,
    connect: Connect,
    reset: Callable[[], None],
    load: Loader,
    *,
    prep_threads: int = 2,
    max_waiting: int = 64,
    stats: FeedStats | None = None,
) -> Generator[tuple[pd.DataFrame, list[RowOutcome]], None, None]:
    """Streamed feeding of every row of ``frames`` (which need a ``path``).

    Args:
        frames: input frames; pulled ahead as far as the engine's depth needs.
        plan: frame -> one ``RowPlan`` per row (the requests each row asks).
        connect: returns a stream on the current engine (building the engine if needed); called
            on the first request, and again after ``reset``.
        reset: discards a dead engine so that ``connect`` builds a new one.
        load: path -> ``PreparedImage`` (``udfs.images.prepare.load_image`` with the run's
            settings); runs in ``prep_threads`` background threads.
        prep_threads: decoding threads; 0 decodes inline.
        max_waiting: cap on images loaded or loading and not yet handed to the engine.
        stats: filled in place; complete once the iterator is exhausted.

    Yields:
        ``(frame, outcomes)`` per input frame, in input order, one outcome per row in row order.

    Raises:
        RuntimeError: the engine died twice in a row.
        WorkerFatalError: the worker's CUDA context broke (``udfs.engines.failures``).
    """
    prep = PrepQueue(load, prep_threads, max_waiting)
    feeder = _Feeder(frames, plan, connect, reset, prep,
                     stats if stats is not None else FeedStats())
    return feeder.run()


def engine_metrics(stats: FeedStats, prefix: str = "") -> dict[str, float]:
    """The feeding figures worth a chart: rates per Python worker (seconds add up across
    workers), engine-busy share, share of time in the engine's step, cached prompt share,
    requests in flight and queue wait, and the engine's own scheduler figures (requests it ran
    and kept waiting, KV-cache usage, preemptions) when it reports them."""
    wall = stats.wall_s
    figures: dict[str, float | None] = {
        "engine_busy_fraction": stats.busy_fraction,
        "engine_step_fraction": stats.step_s / wall if wall > 0 else 0.0,
        "images_per_s_per_worker": stats.images_per_s,
        "prompt_tokens_per_s_per_worker": stats.prompt_tokens_per_s,
        "completion_tokens_per_s_per_worker": stats.completion_tokens_per_s,
        "engine_rebuilds": float(stats.engine_rebuilds),
        "cached_prompt_ratio": stats.cached_prompt_ratio,
        "in_flight_mean": stats.in_flight_mean,
        "in_flight_peak": float(stats.in_flight_peak),
        "queue_wait_ms_mean": stats.queue_wait_ms_mean,
        "engine_running_mean": stats.engine_running_mean,
        "engine_waiting_mean": stats.engine_waiting_mean,
        "kv_cache_usage_mean": stats.kv_cache_usage_mean,
        "kv_cache_usage_max": stats.kv_cache_usage_max,
    }
    if stats.engine_sampled_s > 0:
        figures["engine_running_peak"] = float(stats.engine_running_peak)
    if stats.preemptions is not None:
        figures["preemptions"] = float(stats.preemptions)
    return {f"{prefix}{name}": value for name, value in figures.items() if value is not None}
