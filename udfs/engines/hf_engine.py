"""The fallback engine: Hugging Face transformers ``generate``, on CPU or one GPU.

It renders the same chat text and feeds the same pixels as the vLLM engine; with float32 and
greedy decoding both give the same token ids. It generates one image at a time: batched
generation pads prompts, which changes float results slightly and would break that equality.
Token log-probabilities come from the raw logits of each generated position (``output_logits``,
before penalties and temperature), as vLLM's ``raw_logprobs`` does.
It has no stream of its own: the feeder hands it ``engine.transformers.images_per_call`` images
per ``generate`` call (``udfs.engines.stream.BatchedStream``).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from typing import Any

from udfs.engines.base import FINISH_LENGTH, FINISH_STOP, Engine, EngineDeadError, Generation
from udfs.engines.chat import ChatRenderer, load_processor
from udfs.prompts import PromptSpec
from udfs.settings import EngineSettings, ImageSettings, SamplingSettings

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class TransformersEngine(Engine):
    """``AutoModelForImageTextToText`` + ``AutoProcessor`` from one model directory or hub id."""

    def __init__(self, settings: EngineSettings, image_settings: ImageSettings):
        super().__init__(settings, image_settings)
        try:
            import torch
            from transformers import AutoModelForImageTextToText
        except ImportError as err:
            raise ImportError(
                "the transformers backend needs torch and transformers: "
                "pip install 'candid-vlm[hf]'"
            ) from err
        self._torch = torch
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = getattr(torch, _DTYPES[settings.dtype]) if settings.dtype in _DTYPES else "auto"
        pinned = {"revision": settings.hub_revision} if settings.hub_revision else {}
        self._model = AutoModelForImageTextToText.from_pretrained(
            settings.model, dtype=dtype, trust_remote_code=settings.trust_remote_code, **pinned
        ).to(self._device).eval()
        self._processor = load_processor(
            settings.model, settings.trust_remote_code, settings.hub_revision
        )
        self._renderer = ChatRenderer(self._processor)
        eos = self._model.generation_config.eos_token_id
        self._eos_ids = frozenset(eos if isinstance(eos, (list, tuple)) else [eos])

    def generate(
        self, images: Sequence[Any], prompt: PromptSpec, sampling: SamplingSettings
    ) -> list[Generation]:
        if self._model is None:
            raise EngineDeadError("the transformers engine was shut down")
        text = self._renderer.render(prompt)
        try:
            return [self._generate_one(image, text, sampling) for image in images]
        except self._torch.OutOfMemoryError as err:
            raise EngineDeadError(f"out of memory in transformers generate: {err}") from err

    def _generate_one(self, image, text: str, sampling: SamplingSettings) -> Generation:
        started = time.monotonic()  # one image at a time: its own turn is when it is scheduled
        inputs = self._processor(
            text=[text], images=[image], return_tensors="pt",
            images_kwargs={"size": self.image_settings.processor_size()},
        ).to(self._device)
        greedy = sampling.temperature == 0.0
        if not greedy:
            self._torch.manual_seed(sampling.seed)
        with self._torch.inference_mode():
            output = self._model.generate(
                **inputs,
                max_new_tokens=sampling.max_tokens,
                do_sample=not greedy,
                temperature=None if greedy else sampling.temperature,
                top_p=None if greedy else sampling.top_p,
                top_k=None,
                repetition_penalty=sampling.repetition_penalty,
                output_logits=True,
                return_dict_in_generate=True,
            )
        prompt_len = int(inputs["input_ids"].shape[1])
        new_ids = [int(t) for t in output.sequences[0, prompt_len:]]
        logprobs = self._token_logprobs(output.logits, new_ids)
        finish = FINISH_LENGTH
        if new_ids and new_ids[-1] in self._eos_ids:
            new_ids, logprobs, finish = new_ids[:-1], logprobs[:-1], FINISH_STOP
        decoded = self._processor.tokenizer.decode(new_ids, skip_special_tokens=True)
        return Generation(
            text=decoded, token_ids=tuple(new_ids), finish_reason=finish, prompt_tokens=prompt_len,
            logprobs=logprobs, scheduled_at=started,
        )

    def _token_logprobs(self, logits: Any, token_ids: list[int]) -> tuple[float, ...]:
        """log_softmax (float32) of each position's raw logits, at the token generated there."""
        return tuple(
            float(self._torch.log_softmax(step[0].float(), dim=-1)[token])
            for step, token in zip(logits, token_ids, strict=True)
        )

    def shutdown(self) -> None:
        if self._model is None:
            return
        self._model = None
        gc.collect()
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
