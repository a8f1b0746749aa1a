"""What produced a result row, as one short hash: the row's ``run_fingerprint``.

Two rows with the same fingerprint come from the same rendered chat messages and output schema,
and the same values of every setting that declares it can change the model's output
(``udfs.settings.CHANGES_OUTPUT``): effective sampling, engine (backend, model, revision, dtype,
the selected backend's output-changing fields such as vLLM's JSON grammar settings) and image
pixel bounds. Settings that declare they keep the output (batch size, chunking, threads, the
MLflow run, guardrail thresholds) are left out, so a rerun with other plumbing resumes instead
of being refused.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from udfs.prompts import PromptSpec
from udfs.settings import (
    LOCAL_REVISION_PREFIX,
    EngineSettings,
    ImageSettings,
    SamplingSettings,
    changes_output,
)

# Part of the hashed payload. Changing the payload's layout changes every fingerprint, and every
# stored row would then look stale: bump this only together with a note on how to migrate
# (docs/operations.md, "Fingerprint layouts"). 2: built from the declared settings.
FINGERPRINT_LAYOUT = 2


def output_settings(settings: BaseModel) -> dict[str, Any]:
    """The fields of ``settings`` that declare they change the output, as JSON-able values;
    nested settings (an engine's backend group) recursively, an absent group left out."""
    dumped = settings.model_dump(mode="json")
    picked: dict[str, Any] = {}
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            picked[name] = output_settings(value)
        elif changes_output(field):
            picked[name] = dumped[name]
    return picked


def fingerprint_inputs(
    prompt: PromptSpec, sampling: SamplingSettings, engine: EngineSettings, images: ImageSettings
) -> dict[str, Any]:
    """Everything the fingerprint covers, as plain JSON-able data (logged with each run).

    A local model folder is named by its content (``revision`` = ``local-<hash>``), not by where
    it lies: copying the weights to another volume (``/dbfs/...`` to a node's local disk) must
    not make every stored row look stale. A hub model keeps its id: it is what names the weights.
    """
    engine_settings = output_settings(engine)
    if (engine.revision or "").startswith(LOCAL_REVISION_PREFIX):
        engine_settings.pop("model", None)
    return {
        "layout": FINGERPRINT_LAYOUT,
        "prompt": {"messages": prompt.messages(), "output": prompt.output.model_dump(mode="json")},
        "sampling": output_settings(sampling),
        "engine": engine_settings,
        "images": output_settings(images),
    }


def covered_settings(inputs: dict[str, Any]) -> list[str]:
    """The dotted names of the settings in ``fingerprint_inputs``' result, e.g.
    ``engine.vllm.quantization``: what a changed fingerprint can point to."""
    names: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                names.append(f"{prefix}{key}")

    for part in ("sampling", "engine", "images"):
        walk(inputs[part], f"{part}.")
    return names


def run_fingerprint(
    prompt: PromptSpec, sampling: SamplingSettings, engine: EngineSettings, images: ImageSettings
) -> str:
    """sha256 (16 hex) of ``fingerprint_inputs``."""
    payload = json.dumps(
        fingerprint_inputs(prompt, sampling, engine, images), sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
