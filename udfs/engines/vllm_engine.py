"""The production engine: vLLM's offline ``LLM``, in the calling process.

``VLLM_ENABLE_V1_MULTIPROCESSING=0`` is set before vLLM is imported: the engine then runs inside
the Spark Python worker instead of in child processes, so nothing outlives a worker that Spark
kills (idle timeout, task kill), and start-up is several times faster.

Two ways in: ``generate`` (``LLM.generate`` on a batch) and ``open_stream`` (``VllmStream``: the
engine-level ``add_request``/``step`` loop, so a finished request is replaced at once and the
scheduler always has ``max_num_seqs`` sequences to batch; each request brings its own prompt).

Every request asks for the sampled tokens' log-probabilities (``logprobs=0``: in vLLM 0.32 that
is the sampled token's alone, no top-k alternatives; ``flat_logprobs`` keeps them in a few flat
lists instead of a dict per token). They are the model's raw log-probabilities
(``logprobs_mode="raw_logprobs"``, before penalties, temperature or a JSON grammar), as
transformers' ``output_logits`` gives them.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence
from typing import Any

from udfs.engines.base import (
    Engine,
    EngineDeadError,
    EngineSample,
    Generation,
    PromptCall,
    Request,
)
from udfs.engines.chat import ChatRenderer, load_processor
from udfs.engines.failures import worker_failure
from udfs.engines.stream import SteppingStream
from udfs.engines.vllm_env import apply_vllm_env
from udfs.engines.vllm_scheduler import SchedulerView
from udfs.prompts import PromptSpec
from udfs.settings import EngineSettings, ImageSettings, SamplingSettings

# vLLM finish reasons that mean the request failed, not that it ended.
_FAILED_FINISH_REASONS = frozenset({"error", "abort"})


class VllmEngine(Engine):
    """One ``vllm.LLM`` for Qwen2-VL-style models with one image per prompt."""

    def __init__(self, settings: EngineSettings, image_settings: ImageSettings):
        super().__init__(settings, image_settings)
        apply_vllm_env(overwrite=True)
        try:
            import vllm
        except ImportError as err:
            # Fails the task with the installed and required versions; a retry on another
            # executor of the same image would fail the same way, so Spark stops the job.
            raise worker_failure(err) from err
        self._quiet()
        self._vllm = vllm
        self._llm = vllm.LLM(**self.llm_kwargs(settings, image_settings))
        self._quiet()  # again: building the LLM re-applies vLLM's own logging configuration
        self._renderer = ChatRenderer(
            load_processor(settings.model, settings.trust_remote_code, settings.hub_revision)
        )

    def _quiet(self) -> None:
        if self.settings.vllm_settings.quiet:
            # On CPU vLLM warns about torch.set_num_threads hundreds of times per worker.
            logging.getLogger("vllm").setLevel(logging.ERROR)

    @staticmethod
    def llm_kwargs(settings: EngineSettings, image_settings: ImageSettings) -> dict[str, Any]:
        """Arguments for ``vllm.LLM``; the processor gets the same pixel bounds as our resize."""
        vllm = settings.vllm_settings
        kwargs: dict[str, Any] = {
            "model": settings.model,
            "dtype": settings.dtype,
            "max_model_len": vllm.max_model_len,
            "max_num_seqs": vllm.max_num_seqs,
            "max_num_batched_tokens": vllm.max_num_batched_tokens,
            "quantization": vllm.quantization,
            "enforce_eager": vllm.enforce_eager,
            "gpu_memory_utilization": vllm.gpu_memory_utilization,
            "enable_prefix_caching": vllm.enable_prefix_caching,
            "seed": vllm.seed,
            "trust_remote_code": settings.trust_remote_code,
            "limit_mm_per_prompt": {"image": 1, "video": 0},
            "mm_processor_kwargs": {"size": image_settings.processor_size()},
            # Live figures come from the in-process scheduler instead (vllm_scheduler.py).
            "disable_log_stats": True,
            "logprobs_mode": "raw_logprobs",
            # JSON's free whitespace lets a weak or confused model emit blanks until max_tokens
            # and never close the object. vLLM 0.32 honours this only at engine level.
            "structured_outputs_config": {
                "backend": vllm.structured_outputs_backend,
                "disable_any_whitespace": vllm.json_compact_whitespace,
            },
        }
        if vllm.kv_cache_memory_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = vllm.kv_cache_memory_bytes
        if settings.hub_revision is not None:
            kwargs["revision"] = settings.hub_revision
        return kwargs

    def open_stream(self) -> VllmStream:
        """A stream on vLLM's engine loop, keeping ``engine.vllm.max_num_seqs`` in flight."""
        if self._llm is None:
            raise EngineDeadError("the vLLM engine was shut down")
        return VllmStream(self)

    def render_request(self, text: str, image: Any) -> Any:
        """One prompt + image as vLLM's processed engine input (tokens, pixels, placeholders),
        exactly as ``LLM.generate`` renders it; raises for an image the processor rejects."""
        from vllm.renderers.inputs.preprocess import parse_model_prompt

        core = self._llm.llm_engine
        renderer = core.renderer
        request = {"prompt": text, "multi_modal_data": {"image": image}}
        parsed = parse_model_prompt(core.model_config, request)
        (engine_input,) = renderer.render_cmpl([parsed], renderer.default_cmpl_tok_params)
        return engine_input

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
            logprobs=0,
            flat_logprobs=True,
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
        for out in outputs:
            if (failure := _failure(out)) is not None:
                # Raised for the batch: bisection (generate_isolating_failures) finds the row.
                raise failure
        eos_ids = self._eos_ids()
        return [_to_generation(out, eos_ids) for out in outputs]

    def _eos_ids(self) -> frozenset[int]:
        config = self._llm.llm_engine.model_config.hf_config
        generation = self._llm.llm_engine.model_config.try_get_generation_config() or {}
        ids = generation.get("eos_token_id", getattr(config, "eos_token_id", None))
        if ids is None:
            return frozenset()
        return frozenset(ids if isinstance(ids, (list, tuple)) else [ids])

    def reset_caches(self) -> None:
        """Forget cached prompt prefixes and processed images, so that a benchmark repeating
        the same images measures the work of new ones. Call with nothing in flight."""
        if self._llm is not None:
            self._llm.reset_prefix_cache()
            self._llm.reset_mm_cache()

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


def _to_generation(
    request_output: Any, eos_ids: frozenset[int], scheduled_at: float | None = None
) -> Generation:
    completion = request_output.outputs[0]
    token_ids = tuple(completion.token_ids)
    if token_ids and token_ids[-1] in eos_ids and completion.finish_reason == "stop":
        token_ids = token_ids[:-1]
    cached = getattr(request_output, "num_cached_tokens", None)
    return Generation(
        text=completion.text,
        token_ids=token_ids,
        finish_reason=completion.finish_reason or "unknown",
        prompt_tokens=len(request_output.prompt_token_ids or ()),
        cached_prompt_tokens=None if cached is None else int(cached),
        logprobs=_token_logprobs(completion.logprobs, token_ids),
        scheduled_at=scheduled_at,
    )


def _token_logprobs(logprobs: Any, token_ids: tuple[int, ...]) -> tuple[float, ...] | None:
    """The log-probability of each of ``token_ids`` (one position each, in order; the end token
    stripped from ``token_ids`` is left out); None when vLLM returned none."""
    if logprobs is None:
        return None
    values = []
    for position, token in zip(logprobs, token_ids, strict=False):
        entry = position.get(token) if position else None
        if entry is None:
            return None
        values.append(float(entry.logprob))
    return tuple(values) if len(values) == len(token_ids) else None


def _failure(request_output) -> RuntimeError | None:
    """The error of a request vLLM finished as failed (``error``/``abort``), else None."""
    reason = request_output.outputs[0].finish_reason if request_output.outputs else "error"
    if reason not in _FAILED_FINISH_REASONS:
        return None
    detail = getattr(request_output, "error", None)
    return RuntimeError(f"vLLM finished the request with reason {reason!r}: {detail}")


class VllmStream(SteppingStream):
    """vLLM's engine loop driven from this thread: ``add_request`` per request, ``step`` to
    advance (what ``LLM.generate`` does internally, but with requests joining as others finish),
    and the scheduler read after each step (``SchedulerView``)."""

    def __init__(self, engine: VllmEngine):
        import torch
        from vllm.v1.engine.exceptions import EngineDeadError as VllmEngineDead

        super().__init__(engine, capacity=engine.settings.vllm_settings.max_num_seqs)
        self._vllm_dead, self._out_of_memory = VllmEngineDead, torch.OutOfMemoryError
        self._vllm_engine = engine
        self._core = engine._llm.llm_engine
        self._calls: dict[str, tuple[str, Any]] = {}  # call key -> (chat text, SamplingParams)
        self._eos_ids = engine._eos_ids()
        self._view = SchedulerView.attach(self._core)

    def _prepared(self, call: PromptCall) -> tuple[str, Any]:
        """The call's chat text and sampling parameters, built once per distinct call."""
        found = self._calls.get(call.key)
        if found is None:
            from vllm.sampling_params import RequestOutputKind

            params = self._vllm_engine._sampling_params(call.prompt, call.sampling)
            # As LLM.generate does: one RequestOutput per request, when it finishes.
            params.output_kind = RequestOutputKind.FINAL_ONLY
            found = self._calls[call.key] = (
                self._vllm_engine._renderer.render(call.prompt), params
            )
        return found

    def _add(self, request_id: str, request: Request) -> None:
        text, params = self._prepared(request.call)
        engine_input = self._vllm_engine.render_request(text, request.image)
        try:
            internal_id = self._core.add_request(request_id, engine_input, params)
        except self._vllm_dead as err:
            raise EngineDeadError(f"vLLM engine died: {err}") from err
        if self._view is not None:
            self._view.track(request_id, internal_id)

    def _step(self) -> list[tuple[str, Generation | BaseException]]:
        started = time.monotonic()
        try:
            outputs = self._core.step()
        except self._vllm_dead as err:
            raise EngineDeadError(f"vLLM engine died: {err}") from err
        except self._out_of_memory as err:
            # Nothing else would fit either: a fresh engine (or a fresh worker) is the way out.
            raise EngineDeadError(f"out of memory in a vLLM step: {err}") from err
        if self._view is not None:
            self._view.after_step(started)
        finished = []
        for out in outputs:
            if not out.finished:
                continue
            scheduled_at = (
                self._view.finish(out.request_id, started) if self._view is not None else None
            )
            finished.append(
                (out.request_id, _failure(out) or _to_generation(out, self._eos_ids, scheduled_at))
            )
        return finished

    def engine_sample(self) -> EngineSample | None:
        return self._view.sample() if self._view is not None else None

    def _abort(self, request_ids: list[str]) -> None:
        if self._view is not None:
            for request_id in request_ids:
                self._view.finish(request_id, 0.0)
        self._core.abort_request(request_ids)
