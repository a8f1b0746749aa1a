"""Live figures from vLLM's own scheduler, read in process after each engine step.

Candid builds ``vllm.LLM`` with ``disable_log_stats=True``: with stats on, every step builds a
``SchedulerStats``, records request events and feeds vLLM's logging and Prometheus loggers, and
``RequestOutput.metrics`` (the per-request ``queued_ts``/``scheduled_ts``) exists only then. With
``VLLM_ENABLE_V1_MULTIPROCESSING=0`` the scheduler lives in this process
(``LLMEngine.engine_core`` is an ``InprocClient`` whose ``engine_core.scheduler`` is vLLM's
``Scheduler``), so the cheapest way to the same figures is to read them there:

* ``get_request_counts()`` and ``get_kv_cache_usage()``: the ``num_running_reqs``,
  ``num_waiting_reqs`` and ``kv_cache_usage`` that ``Scheduler.make_stats`` would report;
* each of our requests' ``Request.status`` and ``num_preemptions`` (kept whatever the stats
  setting): when it was first scheduled, and how often it was preempted.

That is O(requests in flight) attribute reads per step. These are vLLM internals (checked
against 0.32); if they are not there (a multiprocess engine, another version), ``attach``
returns None and the figures are simply unknown.
"""

from __future__ import annotations

import logging
from typing import Any

from udfs.engines.base import EngineSample

logger = logging.getLogger(__name__)


class SchedulerView:
    """Follows one stream's requests in the in-process scheduler of one ``LLMEngine``."""

    def __init__(self, scheduler: Any, running_status: Any):
        self._scheduler = scheduler
        self._running_status = running_status
        self._internal: dict[str, str] = {}  # our request id -> vLLM's internal request id
        self._unscheduled: set[str] = set()
        self._scheduled_at: dict[str, float] = {}
        self._preempted: dict[str, int] = {}
        self.preemptions = 0

    @classmethod
    def attach(cls, llm_engine: Any) -> SchedulerView | None:
        """The view of ``llm_engine``'s scheduler; None when it does not run in this process."""
        core = getattr(getattr(llm_engine, "engine_core", None), "engine_core", None)
        scheduler = getattr(core, "scheduler", None)
        needed = ("get_request_counts", "get_kv_cache_usage", "requests")
        if scheduler is None or not all(hasattr(scheduler, name) for name in needed):
            logger.info("vLLM's scheduler is not in this process: no live engine figures")
            return None
        from vllm.v1.request import RequestStatus

        return cls(scheduler, RequestStatus.RUNNING)

    def track(self, request_id: str, internal_id: str) -> None:
        """A request just added (``LLMEngine.add_request`` returns its internal id)."""
        self._internal[request_id] = internal_id
        self._unscheduled.add(request_id)
        self._preempted[request_id] = 0

    def after_step(self, step_started: float) -> None:
        """Note which requests the step that began at ``step_started`` scheduled for the first
        time, and count new preemptions. Requests that finished in the step are gone from the
        scheduler; ``finish`` stamps them."""
        requests = self._scheduler.requests
        for request_id, internal_id in self._internal.items():
            request = requests.get(internal_id)
            if request is None:
                continue
            preempted = request.num_preemptions
            if preempted > self._preempted[request_id]:
                self.preemptions += preempted - self._preempted[request_id]
                self._preempted[request_id] = preempted
            if request_id in self._unscheduled and (
                request.status == self._running_status or preempted > 0
            ):
                self._unscheduled.discard(request_id)
                self._scheduled_at[request_id] = step_started

    def finish(self, request_id: str, step_started: float) -> float:
        """Forget a request that left the engine; when it was first scheduled (a request never
        seen scheduled finished in the step that began at ``step_started``)."""
        self._internal.pop(request_id, None)
        self._unscheduled.discard(request_id)
        self._preempted.pop(request_id, None)
        return self._scheduled_at.pop(request_id, step_started)

    def sample(self) -> EngineSample:
        """The scheduler's figures now (as ``Scheduler.make_stats`` would report them)."""
        running, waiting = self._scheduler.get_request_counts()
        return EngineSample(
            running=int(running), waiting=int(waiting),
            kv_cache_usage=float(self._scheduler.get_kv_cache_usage()),
            preemptions=self.preemptions,
        )
