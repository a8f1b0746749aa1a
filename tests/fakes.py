"""Contract fakes for the engine interface. They test Candid's promises (batch order, one
engine per worker, error rows), never model behaviour; the real engines have their own tests.

Tests hand a factory to the job (``run_describe(make_engine=make_fake_engine)``); Spark pickles
it by reference, so executors import this module by name.
The fake's behaviour is encoded in ``EngineSettings.model`` (a free string for fakes). The
batch-wise fakes take ``images_per_call`` images per ``generate`` call like any engine without a
stream: ``engine.transformers.images_per_call``, or ``engine.vllm.max_num_seqs`` under vLLM.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from udfs.engines.base import Engine, EngineDeadError, EngineSample, Generation, Request
from udfs.engines.stream import SteppingStream
from udfs.prompts import PromptSpec
from udfs.settings import EngineSettings, ImageSettings, SamplingSettings

# Images whose top-left pixel has this colour make PoisonEngine raise.
POISON_RGB = (255, 0, 255)


class FakeEngine(Engine):
    """Describes each image by its size and names the engine instance that did it."""

    def __init__(self, settings: EngineSettings, image_settings: ImageSettings):
        super().__init__(settings, image_settings)
        self.instance = f"{os.getpid()}:{id(self)}"
        self.batch_sizes: list[int] = []
        self.closed = False

    def generate(
        self, images: Sequence, prompt: PromptSpec, sampling: SamplingSettings
    ) -> list[Generation]:
        if self.closed:
            raise EngineDeadError("fake engine was shut down")
        self.batch_sizes.append(len(images))
        return [self._describe(image) for image in images]

    def _describe(self, image) -> Generation:
        return Generation(
            text=f"fake {image.width}x{image.height} by {self.instance}",
            token_ids=(1, 2, 3), finish_reason="stop", prompt_tokens=7,
        )

    def shutdown(self) -> None:
        self.closed = True


class PoisonEngine(FakeEngine):
    """Fails the whole generate call if any image in it is poisoned, like a request that
    vLLM rejects and takes its batch down with it."""

    def generate(self, images, prompt, sampling):
        if any(image.convert("RGB").getpixel((0, 0)) == POISON_RGB for image in images):
            raise ValueError("poisoned image in batch")
        return super().generate(images, prompt, sampling)


class DiesOnceEngine(FakeEngine):
    """Every instance built while the marker file is absent dies on its first call (and
    creates the marker): a fatal engine error that a fresh engine recovers from."""

    def generate(self, images, prompt, sampling):
        marker = Path(self.settings.model)
        if not marker.exists():
            marker.write_text("died once\n")
            raise EngineDeadError("fake engine died")
        return super().generate(images, prompt, sampling)


class AlwaysDeadEngine(FakeEngine):
    def generate(self, images, prompt, sampling):
        raise EngineDeadError("fake engine is dead")


def make_fake_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return FakeEngine(settings, image_settings)


def make_poison_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return PoisonEngine(settings, image_settings)


def make_dies_once_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return DiesOnceEngine(settings, image_settings)


def make_always_dead_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return AlwaysDeadEngine(settings, image_settings)


class ChattyEngine(FakeEngine):
    """Writes the kind of fluent, rule-breaking text the guardrails exist for."""

    def _describe(self, image) -> Generation:
        return Generation(
            text="This image shows three wooden chairs next to a table in the background.",
            token_ids=(4, 5, 6), finish_reason="stop", prompt_tokens=7,
        )


def make_chatty_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return ChattyEngine(settings, image_settings)


class EchoPromptEngine(FakeEngine):
    """Answers with the first line of the prompt's instructions and the image size: what the
    job passed the engine, as the engine received it."""

    def generate(self, images, prompt, sampling):
        self.prompt_line = prompt.instructions.splitlines()[0]
        return super().generate(images, prompt, sampling)

    def _describe(self, image) -> Generation:
        return Generation(
            text=f"{self.prompt_line} ({image.width}x{image.height})",
            token_ids=(1, 2, 3), finish_reason="stop", prompt_tokens=7,
        )


def make_echo_prompt_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return EchoPromptEngine(settings, image_settings)


# --- streaming fakes: an engine with its own continuous-batching loop, like vLLM -------------

# Images whose top-left pixel has this colour are refused when submitted (like a request vLLM's
# processor rejects); POISON_RGB images break the step they are scheduled in.
REJECT_RGB = (0, 255, 255)


def _top_left(image) -> tuple[int, int, int]:
    return image.convert("RGB").getpixel((0, 0))


class FakeSteppingStream(SteppingStream):
    """A scheduler in miniature: each step advances the first ``capacity`` requests by one
    token; a request finishes after ``1 + width % 5`` steps, so requests leave out of order.
    Like vLLM it says when it first scheduled each request and reports its running and
    waiting requests, a KV-cache usage (running / capacity) and its preemptions. The engine
    records how many requests were in flight at every step."""

    def __init__(self, engine: StreamingFakeEngine):
        super().__init__(engine, capacity=engine.settings.vllm_settings.max_num_seqs)
        self._fake = engine
        self._queue: dict[str, list] = {}  # request id -> [request, steps left, scheduled at]
        self._added: dict[str, tuple[float, bool]] = {}  # request id -> (added at, queued)
        self.preemptions = 0

    def _add(self, request_id, request) -> None:
        image = request.image
        if self._fake.closed:
            raise EngineDeadError("fake engine was shut down")
        if _top_left(image) == REJECT_RGB:
            raise ValueError("request rejected by the fake processor")
        self._queue[request_id] = [request, 1 + image.width % 5, None]
        self._added[request_id] = (time.monotonic(), len(self._queue) > self.capacity)
        self._fake.submitted.append(image)

    def _step(self):
        fake = self._fake
        fake.steps += 1
        started = time.monotonic()
        time.sleep(fake.step_sleep_s)
        fake.in_flight_at_step.append((len(self._queue), len(fake.submitted)))
        if fake.dies_at_step is not None and fake.steps >= fake.dies_at_step:
            raise EngineDeadError(f"fake engine died at step {fake.steps}")
        if fake.steps in fake.preempt_at_steps and self._queue:
            self._preempt_last_running()
        scheduled = list(self._queue.items())[: self.capacity]
        if any(_top_left(entry[0].image) == POISON_RGB for _, entry in scheduled):
            raise ValueError("poisoned request broke the step")
        done = []
        for request_id, entry in scheduled:
            if entry[2] is None:
                entry[2] = started
                added, queued = self._added[request_id]
                fake.waits.append(((started - added) * 1000.0, queued))
            entry[1] -= 1
            if entry[1] == 0:
                del self._queue[request_id]
                done.append((request_id, fake.streamed(entry[0], entry[2])))
        return done

    def _preempt_last_running(self) -> None:
        """Evict the last running request to the back of the queue, its progress lost."""
        running = list(self._queue)[: self.capacity]
        request_id = running[-1]
        request, _, scheduled_at = self._queue.pop(request_id)
        self._queue[request_id] = [request, 1 + request.image.width % 5, scheduled_at]
        self.preemptions += 1

    def engine_sample(self) -> EngineSample:
        running = min(self.capacity, len(self._queue))
        return EngineSample(running=running, waiting=len(self._queue) - running,
                            kv_cache_usage=running / self.capacity, preemptions=self.preemptions)

    def _abort(self, request_ids) -> None:
        for request_id in request_ids:
            self._queue.pop(request_id, None)


# Token log-probabilities of every streamed fake output: mean -1.0, minimum -2.25.
FAKE_LOGPROBS = (-0.25, -0.5, -1.0, -2.25)


class StreamingFakeEngine(PoisonEngine):
    """A ``PoisonEngine`` (its batch ``generate`` is the bisection fallback) that also streams.

    ``dies_at_step``: every step from that one on raises ``EngineDeadError`` (per instance);
    ``step_sleep_s``: how long a step takes; ``preempt_at_steps``: steps that preempt a request.
    The first streamed request of each instance has no cached prompt tokens, later ones 5.
    """

    dies_at_step: int | None = None
    step_sleep_s: float = 0.0
    preempt_at_steps: frozenset[int] = frozenset()

    def __init__(self, settings: EngineSettings, image_settings: ImageSettings):
        super().__init__(settings, image_settings)
        self.steps = 0
        self.served = 0
        self.submitted: list = []
        self.in_flight_at_step: list[tuple[int, int]] = []  # (in flight, submitted so far)
        # Per request, as this scheduler saw it: ms from its add to its first step, and whether
        # it was added behind a full engine (more than ``capacity`` requests held).
        self.waits: list[tuple[float, bool]] = []

    def open_stream(self):
        if self.closed:
            raise EngineDeadError("fake engine was shut down")
        return FakeSteppingStream(self)

    def streamed(self, request: Request, scheduled_at: float) -> Generation:
        self.served += 1
        image = request.image
        return Generation(
            text=f"fake {image.width}x{image.height} by {self.instance}",
            token_ids=(1, 2, 3, 4), finish_reason="stop", prompt_tokens=9,
            cached_prompt_tokens=0 if self.served == 1 else 5, logprobs=FAKE_LOGPROBS,
            scheduled_at=scheduled_at,
        )


def make_streaming_fake_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return StreamingFakeEngine(settings, image_settings)
