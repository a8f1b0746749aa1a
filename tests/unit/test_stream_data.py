"""What crosses a request stream is plain picklable data (so an engine can later live in another
process), and the vLLM scheduler view's bookkeeping (first scheduling, preemptions) on a
stand-in scheduler; the real scheduler is exercised in tests/e2e/test_engines.py."""

import pickle
from types import SimpleNamespace

import pytest
from PIL import Image

from udfs.engines.base import EngineSample, Generation, PromptCall, Request
from udfs.engines.vllm_scheduler import SchedulerView
from udfs.prompts import PromptSpec
from udfs.runner.feeding import RequestOutcome
from udfs.settings import SamplingSettings

PROMPT = PromptSpec(name="p", version="v1", system="s", instructions="Describe.")


def test_requests_and_outcomes_survive_pickling():
    call = PromptCall(PROMPT, SamplingSettings(max_tokens=7))
    request = Request(3, call, Image.new("RGB", (56, 28), (1, 2, 3)))
    back = pickle.loads(pickle.dumps(request))
    assert back.key == 3 and back.call == call and back.call.key == call.key
    assert back.image.size == (56, 28) and back.image.getpixel((5, 5)) == (1, 2, 3)
    generation = Generation("a b", (5, 6), "stop", 11, 4, logprobs=(-0.5, -2.0),
                            scheduled_at=12.5)
    outcome = RequestOutcome(generation, 30.0, 2.5)
    assert pickle.loads(pickle.dumps(outcome)) == outcome
    failed = pickle.loads(pickle.dumps(RequestOutcome(ValueError("bad image"), 1.0, None)))
    assert isinstance(failed.outcome, ValueError) and str(failed.outcome) == "bad image"
    sample = EngineSample(running=3, waiting=1, kv_cache_usage=0.25, preemptions=0)
    assert pickle.loads(pickle.dumps(sample)) == sample


def test_a_call_is_identified_by_its_prompt_and_its_sampling():
    base = PromptCall(PROMPT, SamplingSettings())
    assert PromptCall(PROMPT, SamplingSettings()).key == base.key
    assert PromptCall(PROMPT, SamplingSettings(max_tokens=7)).key != base.key
    other = PROMPT.model_copy(update={"instructions": "Describe briefly."})
    assert PromptCall(other, SamplingSettings()).key != base.key


def test_logprob_summaries():
    generation = Generation("x", (1, 2, 3), "stop", 5, logprobs=(-0.1, -3.0, -0.2))
    assert generation.mean_logprob == pytest.approx(-3.3 / 3)
    assert generation.min_logprob == -3.0
    assert Generation("", (), "stop", 5, logprobs=()).mean_logprob is None
    assert Generation("x", (1,), "stop", 5).min_logprob is None


class _Scheduler:
    """The parts of vLLM's Scheduler the view reads."""

    def __init__(self):
        self.requests: dict[str, SimpleNamespace] = {}

    def add(self, internal_id: str) -> SimpleNamespace:
        self.requests[internal_id] = SimpleNamespace(status="WAITING", num_preemptions=0)
        return self.requests[internal_id]

    def get_request_counts(self):
        running = sum(r.status == "RUNNING" for r in self.requests.values())
        return running, len(self.requests) - running

    def get_kv_cache_usage(self):
        return 0.5


def test_the_scheduler_view_stamps_first_scheduling_and_counts_preemptions():
    scheduler = _Scheduler()
    view = SchedulerView(scheduler, running_status="RUNNING")
    a, b = scheduler.add("a-x1"), scheduler.add("b-x2")
    view.track("a", "a-x1")
    view.track("b", "b-x2")
    a.status = "RUNNING"
    view.after_step(10.0)  # the step at 10.0 ran a; b still waits
    b.status = "RUNNING"
    view.after_step(11.0)
    a.status, a.num_preemptions = "PREEMPTED", 1  # evicted, back in the queue
    view.after_step(12.0)
    a.status = "RUNNING"
    view.after_step(13.0)
    assert view.sample() == EngineSample(running=2, waiting=0, kv_cache_usage=0.5,
                                         preemptions=1)
    del scheduler.requests["a-x1"], scheduler.requests["b-x2"]
    assert view.finish("a", 14.0) == 10.0 and view.finish("b", 14.0) == 11.0
    # A request that finished in the very step that first scheduled it.
    scheduler.add("c-x3")
    view.track("c", "c-x3")
    del scheduler.requests["c-x3"]
    view.after_step(20.0)
    assert view.finish("c", 20.0) == 20.0
    assert view.preemptions == 1
