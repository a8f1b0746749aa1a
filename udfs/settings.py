"""Settings passed from the driver into executors: engine, sampling and image handling.

These are plain pydantic models with no Spark dependency. The job config (``jobs.config``)
composes them; the pandas-UDF adapter receives them as arguments (pickled with the UDF), never
from environment variables or module globals.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Qwen2-VL merges 2x2 patches of 14 px: every side must be a multiple of 28 px.
QWEN_PATCH_FACTOR = 28
# Qwen2-VL-Instruct's processor default lower bound (4 visual tokens).
QWEN_DEFAULT_MIN_PIXELS = 4 * 28 * 28


# Revisions that identify a local model folder's files, not a hub commit the loaders can fetch.
LOCAL_REVISION_PREFIX = "local-"

# Pillow refuses (DecompressionBombError) images over twice its process-wide MAX_IMAGE_PIXELS
# before our own budget is consulted; a budget above that would never be reached.
PILLOW_HARD_PIXEL_LIMIT = 2 * 89_478_485


# How rows reach the engine: one definition, used by the job config and by the task the
# executors receive.
BatchSize = Annotated[int, Field(
    16, ge=1, le=4096,
    description="Rows per Arrow batch between Spark and the Python worker, and images per "
    "generate call for engines without streaming (transformers). Not a throughput knob for "
    "vLLM, which keeps engine.max_num_seqs requests in flight whatever this is.",
)]
PrepThreads = Annotated[int, Field(
    2, ge=0, le=32,
    description="Threads per Python worker that read, decode and resize upcoming images while "
    "the engine works (0: decode inline). Each costs a share of a core.",
)]
MaxWaitingImages = Annotated[int, Field(
    64, ge=1,
    description="Cap on decoded images waiting for the engine per worker (bounded memory: a "
    "resized thumbnail is ~0.5 MB); enough to refill the engine as requests finish.",
)]


class StrictModel(BaseModel):
    """Base for all settings: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def stable_hash(self) -> str:
        """A short hash of the validated values, stable across processes and machines."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class SamplingSettings(StrictModel):
    """How tokens are drawn. Greedy (temperature 0) is the default: it is reproducible and makes
    the vLLM and transformers engines token-for-token comparable."""

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass; 1 disables it.")
    max_tokens: int = Field(
        128, ge=1, le=8192,
        description="Hard cap on generated tokens. Outputs that hit it get finish_reason 'length' "
        "and the 'truncated' guardrail flag.",
    )
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0, description="1 disables it.")
    seed: int = Field(0, description="Per-request seed, so sampled runs are reproducible too.")


class ImageSettings(StrictModel):
    """How images are read, checked and resized before they reach the engine."""

    min_pixels: int = Field(
        QWEN_DEFAULT_MIN_PIXELS, ge=QWEN_PATCH_FACTOR**2,
        description="Qwen2-VL smart_resize lower bound (pixels). Smaller images are upscaled to it "
        "keeping aspect ratio. Must equal what the engine's processor is given.",
    )
    max_pixels: int = Field(
        512 * 28 * 28, ge=QWEN_PATCH_FACTOR**2,
        description="Qwen2-VL smart_resize upper bound (pixels); bigger images are downscaled. "
        "Caps visual tokens per image at max_pixels / 784; 512 tokens suits thumbnails.",
    )
    max_decoded_pixels: int = Field(
        64_000_000, ge=1, le=PILLOW_HARD_PIXEL_LIMIT,
        description="Decompression-bomb budget: images whose header declares more pixels are "
        "rejected before decoding (per call, without touching Pillow's process-wide limit).",
    )
    max_file_bytes: int = Field(
        50_000_000, ge=1, description="Files larger than this are rejected without decoding."
    )
    max_aspect_ratio: float = Field(
        200.0, gt=1.0,
        description="Qwen2-VL rejects aspect ratios of 200:1 or more; such images get a status "
        "code.",
    )
    background_rgb: tuple[int, int, int] = Field(
        (255, 255, 255),
        description="Colour that transparent pixels (RGBA, LA, palette with transparency) are "
        "composited onto. White suits product thumbnails; a black fill invents dark backgrounds.",
    )
    low_visibility_max_side: int = Field(
        64, ge=1,
        description="Images whose longer original side is at most this are low-visibility.",
    )
    low_visibility_min_sharpness: float = Field(
        15.0, ge=0.0,
        description="Images whose Laplacian variance (grayscale, 0-255) is below this are "
        "low-visibility (blurry or flat).",
    )

    def processor_size(self) -> dict[str, int]:
        """The pixel bounds as the Qwen2-VL image processor takes them (``size=``): both
        engines give the processor exactly the bounds Candid's own resize used."""
        return {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}

    @model_validator(mode="after")
    def _pixel_bounds_ordered(self) -> ImageSettings:
        if self.min_pixels > self.max_pixels:
            raise ValueError(
                f"min_pixels ({self.min_pixels}) must not exceed max_pixels ({self.max_pixels})"
            )
        return self


class EngineSettings(StrictModel):
    """Which engine runs the model and how it is started. One engine per Python worker is cached
    under ``stable_hash()`` of these settings."""

    backend: Literal["vllm", "transformers"] = Field(
        "vllm", description="vllm is the production engine; transformers is the fallback."
    )
    model: str = Field(
        ..., min_length=1,
        description="Model directory or hub id, e.g. Qwen/Qwen2-VL-7B-Instruct or a local copy.",
    )
    model_id: str | None = Field(
        None, description="Name recorded in result rows and keys; defaults to `model`."
    )
    revision: str | None = Field(
        None,
        description="Weights revision: a hub commit or tag (passed to the loaders, so a run "
        "pins its weights), or 'local-<hash>' that the job fills in for a local folder (part of "
        "the run fingerprint only).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="float32 on CPU (bf16 on AVX2 is slower and not token-equal to transformers); "
        "bfloat16 on A100s.",
    )
    max_model_len: int = Field(2048, ge=256, description="Context length the engine reserves for.")
    max_num_seqs: int = Field(
        64, ge=1,
        description="vLLM: sequences scheduled together, and how many requests Candid keeps in "
        "flight per engine. A 7B model needs hundreds to saturate an A100; the KV cache must "
        "hold them (else vLLM preempts).",
    )
    max_num_batched_tokens: int | None = Field(
        None, ge=256,
        description="vLLM: token budget of one scheduler step (prefill chunks + one token per "
        "decoding sequence). Larger admits new requests' prompts faster at the cost of longer "
        "steps; None keeps vLLM's default for the device.",
    )
    enforce_eager: bool = Field(
        False, description="vLLM: skip torch.compile/CUDA graphs. Faster start, slower steps."
    )
    gpu_memory_utilization: float = Field(
        0.85, gt=0.0, le=1.0,
        description="vLLM on GPU: fraction of GPU memory it may take; what the weights leave "
        "becomes KV cache, i.e. how many sequences fit in flight.",
    )
    kv_cache_memory_bytes: int | None = Field(
        None, ge=1 << 20,
        description="vLLM: explicit KV-cache size. Set it on CPU (e.g. 64 MiB for the tiny model): "
        "left alone, vLLM on CPU reserves many GiB beside Spark.",
    )
    enable_prefix_caching: bool = Field(
        True,
        description="vLLM: reuse the KV of the shared instruction prefix across images, so only "
        "the image and what follows it is prefilled (see cached_prompt_tokens).",
    )
    quantization: str | None = Field(
        None, min_length=1,
        description="vLLM: weight quantization, e.g. 'fp8' (half the weight memory of bf16 "
        "on GPUs that support it, so more KV cache and more sequences); None: as the model "
        "ships.",
    )
    structured_outputs_backend: Literal["xgrammar", "guidance"] = Field(
        "xgrammar", description="vLLM JSON mode: the grammar backend that constrains decoding."
    )
    json_compact_whitespace: bool = Field(
        True,
        description="vLLM JSON mode: forbid optional whitespace in decoded JSON, so a model "
        "cannot loop on blanks until max_tokens and leave the object unclosed.",
    )
    seed: int = Field(0, description="Engine seed (weights are fixed; affects sampling only).")
    trust_remote_code: bool = Field(False, description="Passed to the model loaders.")
    quiet: bool = Field(True, description="Lower vLLM's log level so real errors stay readable.")

    @field_validator("model")
    @classmethod
    def _local_model_absolute(cls, value: str) -> str:
        # A local model folder must resolve the same in every executor's working directory.
        return str(Path(value).resolve()) if Path(value).is_dir() else value

    @property
    def recorded_model_id(self) -> str:
        return self.model_id or self.model

    @property
    def hub_revision(self) -> str | None:
        """The revision to hand to the model loaders: None for a local folder's own marker."""
        if self.revision is None or self.revision.startswith(LOCAL_REVISION_PREFIX):
            return None
        return self.revision
