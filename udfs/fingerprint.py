"""What produced a result row, as one short hash: the row's ``run_fingerprint``.

Two rows with the same fingerprint come from the same rendered chat messages, output schema,
effective sampling, model (recorded id, weights revision when known, backend, dtype,
quantization) and image pixel bounds. Whatever can change the model's output belongs here; what
cannot (batch size, chunking, the MLflow run, guardrail thresholds) does not, so a rerun with
other plumbing resumes instead of being refused.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from udfs.prompts import PromptSpec
from udfs.settings import EngineSettings, ImageSettings, SamplingSettings

# Part of the hashed payload. Changing the payload's layout changes every fingerprint, and every
# stored row would then look stale: bump this only together with a note on how to migrate.
FINGERPRINT_LAYOUT = 1


def fingerprint_inputs(
    prompt: PromptSpec, sampling: SamplingSettings, engine: EngineSettings, images: ImageSettings
) -> dict[str, Any]:
    """Everything the fingerprint covers, as plain JSON-able data (logged with each run)."""
    return {
        "layout": FINGERPRINT_LAYOUT,
        "messages": prompt.messages(),
        "output": prompt.output.model_dump(mode="json"),
        "sampling": sampling.model_dump(mode="json"),
        "model": {
            "id": engine.recorded_model_id,
            "revision": engine.revision,
            "backend": engine.backend,
            "dtype": engine.dtype,
            "quantization": engine.quantization,
        },
        "pixels": {
            "min_pixels": images.min_pixels,
            "max_pixels": images.max_pixels,
            "background_rgb": list(images.background_rgb),
        },
    }


def run_fingerprint(
    prompt: PromptSpec, sampling: SamplingSettings, engine: EngineSettings, images: ImageSettings
) -> str:
    """sha256 (16 hex) of ``fingerprint_inputs``."""
    payload = json.dumps(
        fingerprint_inputs(prompt, sampling, engine, images), sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
