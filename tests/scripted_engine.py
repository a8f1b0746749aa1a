"""A scripted engine: it answers from a script the test writes, per image, so end-to-end tests
can pin every eval metric to outputs they chose (known hallucinations, miscounts, abstentions,
scope violations, probe answers).

The engine only sees pixels, so the script is keyed by the image itself: ``image_key`` of the
image as the describe job hands it over (read and sized by ``udfs.images.prepare.load_image`` with the
run's image settings; ``key_for_path`` does the same in the test). The script file's path is
the engine's ``EngineSettings.model`` (a free string for fakes); it is read on every call, so a
cached engine in a reused Spark worker never answers from an old script.

Script (JSON)::

    {"texts": {"v1": {image_key: text}, ...},            # describe prompts, by version
     "answers": {image_key: {question: answer}},          # the probe prompt (name "probe")
     "default_answers": {image_key: answer}, "default_answer": "no"}

A describe request without a scripted text raises, so the row becomes an ``engine_error`` that
the test sees, instead of an output nobody chose.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from udfs.engines.base import Engine, Generation
from udfs.images.prepare import load_image
from udfs.prompts import PromptSpec
from udfs.settings import EngineSettings, ImageSettings, SamplingSettings

PROBE_PROMPT_NAME = "probe"


def image_key(image) -> str:
    """A short hash of an image's size, mode and pixels."""
    digest = hashlib.sha256(f"{image.mode}:{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()[:16]


def key_for_path(path: str, settings: ImageSettings) -> str:
    """The key of the image the engine will receive for ``path``."""
    prepared = load_image(path, settings)
    assert prepared.ok, prepared.message
    return image_key(prepared.image)


def write_script(path: Path, texts: Mapping[str, Mapping[str, str]],
                 answers: Mapping[str, Mapping[str, str]] | None = None,
                 default_answers: Mapping[str, str] | None = None,
                 default_answer: str = "no") -> Path:
    path.write_text(json.dumps({
        "texts": texts, "answers": answers or {}, "default_answers": default_answers or {},
        "default_answer": default_answer,
    }, indent=1))
    return path


class ScriptedEngine(Engine):
    """Describes and answers exactly as the script says."""

    def generate(self, images: Sequence, prompt: PromptSpec,
                 sampling: SamplingSettings) -> list[Generation]:
        script = json.loads(Path(self.settings.model).read_text())
        return [self._one(script, image_key(image), prompt) for image in images]

    @staticmethod
    def _one(script: dict, key: str, prompt: PromptSpec) -> Generation:
        if prompt.name == PROBE_PROMPT_NAME:
            question = prompt.instructions
            default = script["default_answers"].get(key, script["default_answer"])
            text = script["answers"].get(key, {}).get(question, default)
        else:
            text = script["texts"][prompt.version][key]  # KeyError: a row nobody scripted
        return Generation(text=text, token_ids=tuple(range(len(text.split()))),
                          finish_reason="stop", prompt_tokens=10)

    def shutdown(self) -> None:
        pass


def make_scripted_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    return ScriptedEngine(settings, image_settings)
