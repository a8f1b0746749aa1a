"""The engine interface shared by every backend (``udfs.engines.registry`` picks one).

Two ways to drive an engine: ``generate`` (a batch in, a batch out) and ``open_stream`` (requests
submitted one by one, collected as each finishes, so the engine never waits for a batch's
slowest request). Engines that can only ``generate`` get a batch-wise stream from
``udfs.engines.stream.open_stream``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from udfs.prompts import PromptSpec
from udfs.settings import EngineSettings, ImageSettings, SamplingSettings

if TYPE_CHECKING:
    from PIL import Image

# (row key, its outcome): a Generation, or the exception that failed this request alone.
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
    the ids of both engines are directly comparable."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str
    prompt_tokens: int
    # Prompt tokens served from the prefix cache (vLLM's num_cached_tokens); None when the
    # engine cannot say.
    cached_prompt_tokens: int | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


class RequestStream(ABC):
    """Requests on one engine for one prompt, each finishing on its own.

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
    def submit(self, key: int, image: Any) -> None:
        """Queue one request for ``image`` under ``key`` (unique within the stream).

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

    def open_stream(self, prompt: PromptSpec, sampling: SamplingSettings) -> RequestStream | None:
        """A stream of requests for one prompt, for engines that add requests to a running
        batch (vLLM). The default, None, means batch-wise only: callers use
        ``udfs.engines.stream.open_stream``, which then runs ``generate`` on
        ``images_per_call`` requests at a time."""
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


def generate_isolating_failures(
    engine: Engine, images: Sequence[Any], prompt: PromptSpec, sampling: SamplingSettings
) -> list[Generation | BaseException]:
    """``engine.generate``; if the batch raises, bisect it so that only the images that fail on
    their own get the exception, and every other image still gets its output.

    Fatal ``EngineDeadError`` is never isolated: it propagates.
    """
    try:
        outputs = engine.generate(images, prompt, sampling)
    except EngineDeadError:
        raise
    except Exception as err:  # noqa: BLE001 - any per-request failure; bisect to find the rows
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
