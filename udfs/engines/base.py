"""The engine interface shared by every backend, and the factory that picks one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from udfs.prompts import PromptSpec
from udfs.settings import EngineSettings, ImageSettings, SamplingSettings

if TYPE_CHECKING:
    from PIL import Image

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

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


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
        self, images: Sequence["Image.Image"], prompt: PromptSpec, sampling: SamplingSettings
    ) -> list[Generation]:
        """One output per image, in input order. Images must already be RGB and sized by
        ``udfs.images.prepare_image``.

        Raises:
            EngineDeadError: the engine can no longer serve requests.
            Exception: anything else means this batch failed; the caller may retry subsets.
        """

    @abstractmethod
    def shutdown(self) -> None:
        """Release the model and its memory. Idempotent."""


def create_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    """Build the engine the settings name. Heavy imports happen here, not at module import."""
    if settings.backend == "vllm":
        from udfs.engines.vllm_engine import VllmEngine

        return VllmEngine(settings, image_settings)
    if settings.backend == "transformers":
        from udfs.engines.hf_engine import TransformersEngine

        return TransformersEngine(settings, image_settings)
    raise ValueError(f"unknown engine backend {settings.backend!r}")  # pragma: no cover
