"""The backend registry: which ``Engine`` class ``EngineSettings.backend`` names.

Kept apart from ``udfs.engines.base`` so that the interface never imports its implementations
(which import it); a backend's module (vLLM, torch) is imported only when its engine is built.
Tests and library callers do not register anything: they pass their own factory callable
(``run_describe(make_engine=...)``), as Spark's ``predict_batch_udf`` takes ``make_predict_fn``.
"""

from __future__ import annotations

import importlib

from udfs.engines.base import Engine
from udfs.settings import EngineSettings, ImageSettings

# backend name -> (module, class); EngineSettings.backend accepts exactly these names.
BACKENDS: dict[str, tuple[str, str]] = {
    "vllm": ("udfs.engines.vllm_engine", "VllmEngine"),
    "transformers": ("udfs.engines.hf_engine", "TransformersEngine"),
}


def create_engine(settings: EngineSettings, image_settings: ImageSettings) -> Engine:
    """Build the engine the settings name. Heavy imports happen here, not at module import."""
    try:
        module, name = BACKENDS[settings.backend]
    except KeyError:
        raise ValueError(
            f"unknown engine backend {settings.backend!r}; known: {sorted(BACKENDS)}"
        ) from None
    engine_class = getattr(importlib.import_module(module), name)
    return engine_class(settings, image_settings)
