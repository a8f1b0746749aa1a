"""Contract fakes for the engine interface. They test Candid's promises (batch order, one
engine per worker, error rows), never model behaviour; the real engines have their own tests.

Executors import this module by name (``engine_factory="tests.fakes:make_fake_engine"``).
The fake's behaviour is encoded in ``EngineSettings.model`` (a free string for fakes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from udfs.engines.base import Engine, EngineDeadError, Generation
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
