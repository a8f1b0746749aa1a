"""The engine interface shared by every backend (``udfs.engines.registry`` picks one).

Two ways to drive an engine: ``generate`` (a batch of images for one prompt in, a batch out) and
``open_stream`` (requests submitted one by one, each with its own prompt, collected as each
finishes, so the engine never waits for a batch's slowest request). Engines that can only
``generate`` get a batch-wise stream from ``udfs.engines.stream.open_stream``.

Everything that crosses the stream is plain picklable data (``Request`` in; ``Generation`` or
the exception out; ``EngineSample``), never an engine object, so a stream can as well be a
proxy for an engine in another process. Timestamps are ``time.monotonic()`` seconds: on Linux
that is CLOCK_MONOTONIC, one clock for every process of the machine.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from udfs.engines.failures import FailureLevel, classify_failure, worker_failure
from udfs.prompts import PromptSpec
from udfs.settings import EngineSettings, ImageSettings, SamplingSettings

if TYPE_CHECKING:
    from PIL import Image

# (request key, its outcome): a Generation, or the exception that failed this request alone.
StreamResult = tuple[int, "Generation | BaseException"]
# vLLM and transformers finish reasons, mapped to one vocabulary.
FINISH_STOP = "stop"
FINISH_LENGTH = "length"


class EngineDeadError(RuntimeError):
    """The engine cannot serve further requests (crashed, out of memory). Never a row status:
    the caller shuts the engine down and recreates it, or fails the task."""


@dataclass(frozen=True)
class Generation:
    """One output. ``token_ids`` exclude the end-of-sequence token that stopped generation, so
    the ids of both engines are directly comparable; ``logprobs`` are aligned with them."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str
    prompt_tokens: int
    # Prompt tokens served from the prefix cache (vLLM's num_cached_tokens); None when the
    # engine cannot say.
    cached_prompt_tokens: int | None = None
    # The model's log-probability (natural log, before sampling penalties, temperature or a
    # JSON grammar) of each token in token_ids; None when the engine cannot say.
    logprobs: tuple[float, ...] | None = None
    # time.monotonic() when the engine first scheduled this request (vLLM: the step that
    # first ran it; batch-wise engines: when its generate call, or its own turn in it,
    # began); None when the engine cannot say.
    scheduled_at: float | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def mean_logprob(self) -> float | None:
        """Mean token log-probability: a confidence signal, not a truth (None: no tokens or
        no log-probabilities)."""
        if not self.logprobs:
            return None
        return math.fsum(self.logprobs) / len(self.logprobs)

    @property
    def min_logprob(self) -> float | None:
        """The least likely generated token's log-probability (None as for the mean)."""
        return min(self.logprobs) if self.logprobs else None


@dataclass(frozen=True)
class PromptCall:
    """What a request asks, without the image: a prompt and the sampling to answer it with.
    Streams group requests and cache rendered prompts by ``key``."""

    prompt: PromptSpec
    sampling: SamplingSettings

    @cached_property
    def key(self) -> str:
        return f"{self.prompt.content_hash()}:{self.sampling.stable_hash()}"


@dataclass(frozen=True)
class Request:
    """One request: ``key`` (unique within a stream, how its outcome comes back), its prompt
    and sampling, and the image (RGB, sized by ``udfs.images.prepare.prepare_image``)."""

    key: int
    call: PromptCall
    image: Any


@dataclass(frozen=True)
class EngineSample:
    """An engine's own scheduler state after a step (vLLM's ``SchedulerStats`` figures), for
    the live engine metrics of ``udfs.runner.feed_stats.FeedStats``."""

    running: int
    waiting: int
    # Fraction of the KV cache's blocks in use, 0..1.
    kv_cache_usage: float
    # Preemptions (a running request evicted to free KV cache) counted by this stream so far.
    preemptions: int


class RequestStream(ABC):
    """Requests on one engine, each finishing on its own.

    Attributes:
        capacity: requests the engine works on at once. A feeder that has rows left keeps at
            least this many in flight, waiting for an image to be decoded rather than letting
            the engine run short.
        depth: requests a feeder keeps submitted (``>= capacity``); the surplus waits inside
            the engine, so a request that finishes is replaced without a round trip.
    """

    capacity: int
    depth: int

    @abstractmethod
    def submit(self, request: Request) -> None:
        """Queue one request (its ``key`` unique within the stream).

        Raises:
            EngineDeadError: the engine can no longer serve requests. A request the engine
                rejects is not raised: it comes back from ``poll`` with its exception.
        """

    @abstractmethod
    def poll(self) -> list[StreamResult]:
        """Let the engine work (one scheduler step, or one batch) and return the requests that
        finished since the last call, in no particular order.

        Raises:
            EngineDeadError: the engine died; nothing in flight will come back.
        """

    @property
    @abstractmethod
    def in_flight(self) -> int:
        """Requests submitted and not yet returned by ``poll``."""

    def engine_sample(self) -> EngineSample | None:
        """The engine's scheduler state after the last ``poll``; None when it has none to
        report (batch-wise engines)."""
        return None

    def close(self) -> None:  # noqa: B027 - a stream with nothing to free keeps this no-op
        """Forget (abort) everything still in flight. Idempotent; never raises."""


class Engine(ABC):
    """Owns a loaded model: ``generate`` many times, then ``shutdown`` once.

    Engines are expensive to start (seconds to minutes), so the UDF adapter caches one per Python
    worker (``udfs.engines.cache``) instead of building one per batch.
    """

    def __init__(self, settings: EngineSettings, image_settings: ImageSettings):
        self.settings = settings
        self.image_settings = image_settings

    @abstractmethod
    def generate(
        self, images: Sequence[Image.Image], prompt: PromptSpec, sampling: SamplingSettings
    ) -> list[Generation]:
        """One output per image, in input order. Images must already be RGB and sized by
        ``udfs.images.prepare.prepare_image``.

        Raises:
            EngineDeadError: the engine can no longer serve requests.
            Exception: anything else means this batch failed; the caller may retry subsets.
        """

    @abstractmethod
    def shutdown(self) -> None:
        """Release the model and its memory. Idempotent."""

    def open_stream(self) -> RequestStream | None:
        """A stream of requests for engines that add requests to a running batch (vLLM). The
        default, None, means batch-wise only: callers use ``udfs.engines.stream.open_stream``,
        which then runs ``generate`` on ``images_per_call`` requests at a time."""
        return None

    @property
    def images_per_call(self) -> int:
        """Images per ``generate`` call when the engine is fed batch-wise (no stream of its own):
        the selected backend's own setting, ``engine.transformers.images_per_call``; for a
        vLLM-backed engine without a stream (a test fake), what vLLM would schedule at once,
        ``engine.vllm.max_num_seqs``."""
        if self.settings.transformers is not None:
            return self.settings.transformers.images_per_call
        return self.settings.vllm_settings.max_num_seqs


def raise_unless_request_level(err: BaseException) -> None:
    """Return only when ``err`` failed a request alone (``udfs.engines.failures``): raise
    ``WorkerFatalError`` for a broken worker (a CUDA error), ``EngineDeadError`` for a dead
    engine (vLLM's own, out of memory). Call from an ``except`` block."""
    level = classify_failure(err)
    if level is FailureLevel.WORKER:
        raise worker_failure(err) from err
    if level is FailureLevel.ENGINE:
        if isinstance(err, EngineDeadError):
            raise err
        raise EngineDeadError(f"{type(err).__name__}: {err}") from err


def generate_isolating_failures(
    engine: Engine, images: Sequence[Any], prompt: PromptSpec, sampling: SamplingSettings
) -> list[Generation | BaseException]:
    """``engine.generate``; if the batch raises, bisect it so that only the images that fail on
    their own get the exception, and every other image still gets its output.

    Fatal errors are never isolated: ``EngineDeadError`` and ``WorkerFatalError`` propagate.
    """
    try:
        outputs = engine.generate(images, prompt, sampling)
    except Exception as err:  # noqa: BLE001 - any per-request failure; bisect to find the rows
        raise_unless_request_level(err)
        if len(images) == 1:
            return [err]
        middle = len(images) // 2
        return generate_isolating_failures(
            engine, images[:middle], prompt, sampling
        ) + generate_isolating_failures(engine, images[middle:], prompt, sampling)
    if len(outputs) != len(images):
        raise EngineDeadError(
            f"engine returned {len(outputs)} outputs for {len(images)} images; refusing to "
            "guess which output belongs to which row"
        )
    return list(outputs)
