"""Streams of requests: the engine-side half of streamed feeding (``udfs.runner.feeding``).

A stream takes requests one at a time (``submit``), each with its own prompt, and hands back
each one when it finishes (``poll``), so a feeder can add a new request the moment another one
leaves and the engine never idles in the tail of a batch. Every submitted key comes back from
``poll`` exactly once, with a ``Generation`` or the exception that failed that request alone;
only ``EngineDeadError`` is raised, and then every request still in flight is lost and must be
resubmitted to a new engine, or ``WorkerFatalError`` (a broken CUDA context, an engine that does
not import: ``udfs.engines.failures``), which fails the task.

``BatchedStream`` adapts engines that can only ``generate`` a whole batch for one prompt
(transformers, the test fakes): it collects the engine's ``images_per_call`` requests, generates
them together, one call per distinct prompt, and isolates a failing request by bisection
(``generate_isolating_failures``). ``SteppingStream`` is the base for engines with their own
continuous-batching loop (vLLM): it owns the per-request contract (rejections, a step that
breaks, aborts) so that a backend only adds, steps and aborts.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from abc import abstractmethod
from collections.abc import Sequence

from udfs.engines.base import (
    Engine,
    Generation,
    Request,
    RequestStream,
    StreamResult,
    generate_isolating_failures,
    raise_unless_request_level,
)

# Requests a stepping stream keeps queued inside the engine beyond its capacity (at least this
# many, or an eighth more): a request that finishes is replaced from the engine's own queue in
# the very next step, and one late image decode does not leave a slot empty.
MIN_HEADROOM = 2

logger = logging.getLogger(__name__)
_stream_ids = itertools.count()


def open_stream(engine: Engine) -> RequestStream:
    """The engine's own stream if it has one (vLLM), else a ``BatchedStream`` over its
    ``generate`` with at most ``engine.images_per_call`` requests per poll (its backend's
    setting, never the rows per frame)."""
    own = engine.open_stream()
    return own if own is not None else BatchedStream(engine, engine.images_per_call)


def generate_requests(engine: Engine, requests: Sequence[Request]) -> list[StreamResult]:
    """Every request's outcome through ``engine.generate``: one call per distinct prompt (in
    order of first appearance), failures isolated by bisection. An output the engine did not
    time gets the start of its call as ``scheduled_at``: that is when its batch began."""
    groups: dict[str, list[Request]] = {}
    for request in requests:
        groups.setdefault(request.call.key, []).append(request)
    results: list[StreamResult] = []
    for group in groups.values():
        call = group[0].call
        started = time.monotonic()
        outcomes = generate_isolating_failures(
            engine, [r.image for r in group], call.prompt, call.sampling
        )
        results.extend(
            (request.key, _timed(outcome, started))
            for request, outcome in zip(group, outcomes, strict=True)
        )
    return results


def _timed(outcome: Generation | BaseException, started: float) -> Generation | BaseException:
    if isinstance(outcome, Generation) and outcome.scheduled_at is None:
        return dataclasses.replace(outcome, scheduled_at=started)
    return outcome


class BatchedStream(RequestStream):
    """Batch-wise stream for engines that only implement ``generate``: ``poll`` generates every
    request submitted since the last poll (at most ``images_per_call``, the feeder's
    ``depth``)."""

    def __init__(self, engine: Engine, images_per_call: int):
        if images_per_call < 1:
            raise ValueError(f"images_per_call must be at least 1, got {images_per_call}")
        self.capacity = self.depth = images_per_call
        self._engine = engine
        self._pending: list[Request] = []

    def submit(self, request: Request) -> None:
        self._pending.append(request)

    def poll(self) -> list[StreamResult]:
        batch, self._pending = self._pending, []
        return generate_requests(self._engine, batch) if batch else []

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        self._pending = []


class SteppingStream(RequestStream):
    """Base for engines that batch continuously: requests join and leave a running batch.

    Subclasses implement ``_add`` (queue one request, raising for one the engine rejects),
    ``_step`` (advance once, return the requests that finished) and ``_abort``. This class
    keeps the contract: request ids ``candid-<stream>-<key>`` (never integers, so they cannot
    collide with ``LLM.generate``'s counter); a rejected request comes back from ``poll`` with
    its exception; a step that fails a request (not the engine or the worker:
    ``raise_unless_request_level``) aborts every request in
    flight and regenerates them batch-wise (``generate_requests``), so only the request that
    breaks the step fails.
    """

    def __init__(self, engine: Engine, capacity: int):
        self._engine = engine
        self.capacity = capacity
        self.depth = capacity + max(MIN_HEADROOM, capacity // 8)
        self._prefix = f"candid-{next(_stream_ids)}-"
        self._running: dict[str, Request] = {}  # request id -> request
        self._rejected: list[StreamResult] = []

    @abstractmethod
    def _add(self, request_id: str, request: Request) -> None:
        """Queue one request. Raise ``EngineDeadError`` if the engine is dead; any other
        exception rejects this request alone."""

    @abstractmethod
    def _step(self) -> list[tuple[str, Generation | BaseException]]:
        """Advance the engine once; the requests that finished (by request id)."""

    @abstractmethod
    def _abort(self, request_ids: list[str]) -> None:
        """Drop these requests from the engine."""

    @property
    def in_flight(self) -> int:
        return len(self._running) + len(self._rejected)

    def submit(self, request: Request) -> None:
        request_id = f"{self._prefix}{request.key}"
        try:
            self._add(request_id, request)
        except Exception as err:  # noqa: BLE001 - the engine refused this request; a row error
            raise_unless_request_level(err)
            self._rejected.append((request.key, err))
            return
        self._running[request_id] = request

    def poll(self) -> list[StreamResult]:
        finished, self._rejected = self._rejected, []
        if not self._running:
            return finished
        try:
            done = self._step()
        except Exception as err:  # noqa: BLE001 - some request broke the step; isolate it
            raise_unless_request_level(err)
            return finished + self._isolate(err)
        for request_id, outcome in done:
            request = self._running.pop(request_id, None)
            if request is not None:
                finished.append((request.key, outcome))
        return finished

    def _isolate(self, err: Exception) -> list[StreamResult]:
        """Abort everything in flight and regenerate it batch-wise with bisection."""
        logger.warning("an engine step failed (%s: %s); isolating the %d requests in flight",
                       type(err).__name__, err, len(self._running))
        requests = list(self._running.values())
        self.close()
        return generate_requests(self._engine, requests)

    def close(self) -> None:
        self._rejected = []
        if not self._running:
            return
        ids = list(self._running)
        self._running.clear()
        try:
            self._abort(ids)
        except Exception as err:  # noqa: BLE001 - a dead engine has nothing left to free
            logger.warning("could not abort %d requests: %s", len(ids), err)
