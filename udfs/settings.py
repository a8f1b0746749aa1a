"""Settings passed from the driver into executors: engine, sampling and image handling.

These are plain pydantic models with no Spark dependency. The job config (``jobs.config``)
composes them; the pandas-UDF adapter receives them as arguments (pickled with the UDF), never
from environment variables or module globals.

Every setting declares whether it can change what the model writes for an image it is given
(``json_schema_extra=CHANGES_OUTPUT`` or ``KEEPS_OUTPUT``): the run fingerprint
(``udfs.fingerprint``) hashes exactly the fields that can, and a unit test fails for a setting
that declares neither. Gates that only refuse an image (size limits) and plumbing (batching,
threads, logging) keep the output.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

# Qwen2-VL merges 2x2 patches of 14 px: every side must be a multiple of 28 px.
QWEN_PATCH_FACTOR = 28
# Qwen2-VL-Instruct's processor default lower bound (4 visual tokens).
QWEN_DEFAULT_MIN_PIXELS = 4 * 28 * 28


# Revisions that identify a local model folder's files, not a hub commit the loaders can fetch.
LOCAL_REVISION_PREFIX = "local-"

# Pillow refuses (DecompressionBombError) images over twice its process-wide MAX_IMAGE_PIXELS
# before our own budget is consulted; a budget above that would never be reached.
PILLOW_HARD_PIXEL_LIMIT = 2 * 89_478_485


# The two declarations a setting makes (see the module docstring); ``changes_output`` reads them.
CHANGES_OUTPUT: dict[str, bool] = {"changes_output": True}
KEEPS_OUTPUT: dict[str, bool] = {"changes_output": False}


def changes_output(field: FieldInfo) -> bool | None:
    """A field's declaration: True (it can change the model's output), False, or None (none)."""
    extra = field.json_schema_extra
    return extra.get("changes_output") if isinstance(extra, dict) else None


# How rows reach the engine: one definition, used by the job config and by the task the
# executors receive.
BatchSize = Annotated[int, Field(
    16, ge=1, le=4096,
    description="Rows per frame into the describe UDF, and per result frame back: the UDF's "
    "adapter re-batches Spark's Arrow batches to exactly this many rows (the last frame of a "
    "partition may be shorter), for this query alone, whatever the session's "
    "spark.sql.execution.arrow.maxRecordsPerBatch. Results and progress come back a frame at "
    "a time. Not a throughput knob: the feeder keeps the engine full across frames.",
    json_schema_extra=KEEPS_OUTPUT,
)]
PrepThreads = Annotated[int, Field(
    2, ge=0, le=32,
    description="Threads per Python worker that read, decode and resize upcoming images while "
    "the engine works (0: decode inline). Each costs a share of a core.",
    json_schema_extra=KEEPS_OUTPUT,
)]
MaxWaitingImages = Annotated[int, Field(
    64, ge=1,
    description="Cap on decoded images waiting for the engine per worker (bounded memory: a "
    "resized thumbnail is ~0.5 MB); enough to refill the engine as requests finish.",
    json_schema_extra=KEEPS_OUTPUT,
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

    temperature: float = Field(
        0.0, ge=0.0, le=2.0, description="0 means greedy decoding.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    top_p: float = Field(
        1.0, gt=0.0, le=1.0, description="Nucleus sampling mass; 1 disables it.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    max_tokens: int = Field(
        128, ge=1, le=8192,
        description="Hard cap on generated tokens. Outputs that hit it get finish_reason 'length' "
        "and the 'truncated' guardrail flag.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    repetition_penalty: float = Field(
        1.0, gt=0.0, le=2.0, description="1 disables it.", json_schema_extra=CHANGES_OUTPUT
    )
    seed: int = Field(
        0, description="Per-request seed, so sampled runs are reproducible too.",
        json_schema_extra=CHANGES_OUTPUT,
    )


class SamplingOverrides(StrictModel):
    """Sampling fields a run sets over the prompt's own (``over``). A field left unset keeps the
    prompt's value: ``--set sampling.temperature=0.2`` changes the temperature alone, never a
    JSON prompt's larger ``max_tokens``. Bounds are ``SamplingSettings``'s."""

    temperature: float | None = Field(
        None, description="Replaces the prompt's temperature.", json_schema_extra=CHANGES_OUTPUT
    )
    top_p: float | None = Field(
        None, description="Replaces the prompt's top_p.", json_schema_extra=CHANGES_OUTPUT
    )
    max_tokens: int | None = Field(
        None, description="Replaces the prompt's max_tokens.", json_schema_extra=CHANGES_OUTPUT
    )
    repetition_penalty: float | None = Field(
        None, description="Replaces the prompt's repetition_penalty.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    seed: int | None = Field(
        None, description="Replaces the prompt's seed.", json_schema_extra=CHANGES_OUTPUT
    )

    def given(self) -> dict[str, Any]:
        """The fields this run sets (the others come from the prompt)."""
        return {name: value for name, value in self.model_dump().items() if value is not None}

    def over(self, base: SamplingSettings) -> SamplingSettings:
        """``base`` (the prompt's sampling) with the given fields replaced, one by one."""
        return SamplingSettings.model_validate({**base.model_dump(), **self.given()})

    @model_validator(mode="after")
    def _within_sampling_bounds(self) -> SamplingOverrides:
        try:
            SamplingSettings.model_validate(self.given())
        except ValidationError as err:
            problem = err.errors()[0]
            field = ".".join(str(p) for p in problem["loc"])
            raise ValueError(f"{field}: {problem['msg']}") from None
        return self


class ImageSettings(StrictModel):
    """How images are read, checked and resized before they reach the engine."""

    min_pixels: int = Field(
        QWEN_DEFAULT_MIN_PIXELS, ge=QWEN_PATCH_FACTOR**2,
        description="Qwen2-VL smart_resize lower bound (pixels). Smaller images are upscaled to it "
        "keeping aspect ratio. Must equal what the engine's processor is given.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    max_pixels: int = Field(
        512 * 28 * 28, ge=QWEN_PATCH_FACTOR**2,
        description="Qwen2-VL smart_resize upper bound (pixels); bigger images are downscaled. "
        "Caps visual tokens per image at max_pixels / 784; 512 tokens suits thumbnails.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    max_decoded_pixels: int = Field(
        64_000_000, ge=1, le=PILLOW_HARD_PIXEL_LIMIT,
        description="Decompression-bomb budget: images whose header declares more pixels are "
        "rejected before decoding (per call, without touching Pillow's process-wide limit).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    max_file_bytes: int = Field(
        50_000_000, ge=1, description="Files larger than this are rejected without decoding.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    max_aspect_ratio: float = Field(
        200.0, gt=1.0,
        description="Qwen2-VL rejects aspect ratios of 200:1 or more; such images get a status "
        "code.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    background_rgb: tuple[int, int, int] = Field(
        (255, 255, 255),
        description="Colour that transparent pixels (RGBA, LA, palette with transparency) are "
        "composited onto. White suits product thumbnails; a black fill invents dark backgrounds.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    low_visibility_max_side: int = Field(
        64, ge=1,
        description="Images whose longer original side is at most this are low-visibility "
        "(a column beside the description; the model sees the same pixels).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    low_visibility_min_sharpness: float = Field(
        15.0, ge=0.0,
        description="Images whose Laplacian variance (grayscale, 0-255) is below this are "
        "low-visibility (blurry or flat).",
        json_schema_extra=KEEPS_OUTPUT,
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


class VllmSettings(StrictModel):
    """Settings only the vLLM engine reads (``engine.vllm``, with ``engine.backend: vllm``)."""

    max_model_len: int = Field(
        2048, ge=256,
        description="Context length the engine reserves for; generation stops at it.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    max_num_seqs: int = Field(
        64, ge=1,
        description="Sequences scheduled together, and how many requests Candid keeps in "
        "flight per engine. A 7B model needs hundreds to saturate an A100; the KV cache must "
        "hold them (else vLLM preempts).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    max_num_batched_tokens: int | None = Field(
        None, ge=256,
        description="Token budget of one scheduler step (prefill chunks + one token per "
        "decoding sequence). Larger admits new requests' prompts faster at the cost of longer "
        "steps; None keeps vLLM's default for the device.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    enforce_eager: bool = Field(
        False, description="Skip torch.compile/CUDA graphs. Faster start, slower steps.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    gpu_memory_utilization: float = Field(
        0.85, gt=0.0, le=1.0,
        description="On GPU: fraction of GPU memory vLLM may take; what the weights leave "
        "becomes KV cache, i.e. how many sequences fit in flight.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    kv_cache_memory_bytes: int | None = Field(
        None, ge=1 << 20,
        description="Explicit KV-cache size. Set it on CPU (e.g. 64 MiB for the tiny model): "
        "left alone, vLLM on CPU reserves many GiB beside Spark.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    enable_prefix_caching: bool = Field(
        True,
        description="Reuse the KV of the shared instruction prefix across images, so only "
        "the image and what follows it is prefilled (see cached_prompt_tokens).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    quantization: str | None = Field(
        None, min_length=1,
        description="Weight quantization, e.g. 'fp8' (half the weight memory of bf16 on GPUs "
        "that support it, so more KV cache and more sequences); None: as the model ships.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    structured_outputs_backend: Literal["xgrammar", "guidance"] = Field(
        "xgrammar", description="JSON mode: the grammar backend that constrains decoding.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    json_compact_whitespace: bool = Field(
        True,
        description="JSON mode: forbid optional whitespace in decoded JSON, so a model "
        "cannot loop on blanks until max_tokens and leave the object unclosed.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    seed: int = Field(
        0, description="Engine seed (each request also carries sampling.seed).",
        json_schema_extra=CHANGES_OUTPUT,
    )
    quiet: bool = Field(
        True, description="Lower vLLM's log level so real errors stay readable.",
        json_schema_extra=KEEPS_OUTPUT,
    )


class TransformersSettings(StrictModel):
    """Settings only the transformers engine reads (``engine.transformers``)."""

    images_per_call: int = Field(
        8, ge=1, le=4096,
        description="Images collected per generate call. The engine still generates them one "
        "at a time (batched generation pads prompts, which breaks token equality with vLLM), "
        "so this only sets how many rows finish together.",
        json_schema_extra=KEEPS_OUTPUT,
    )


# engine.backend -> the group of settings only that backend reads.
BACKEND_SETTINGS: dict[str, type[StrictModel]] = {
    "vllm": VllmSettings, "transformers": TransformersSettings,
}


class EngineSettings(StrictModel):
    """Which engine runs the model and how it is started: the fields every backend reads, and
    one group per backend (``vllm``, ``transformers``) of which only the selected one may be
    given, so no backend silently ignores a setting. One engine per Python worker is cached
    under ``stable_hash()`` of these settings."""

    backend: Literal["vllm", "transformers"] = Field(
        "vllm", description="vllm is the production engine; transformers is the fallback.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    model: str = Field(
        ..., min_length=1,
        description="Model directory or hub id, e.g. Qwen/Qwen2-VL-7B-Instruct or a local copy.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    model_id: str | None = Field(
        None, description="Name recorded in result rows and keys; defaults to `model`.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    revision: str | None = Field(
        None,
        description="Weights revision: a hub commit or tag (passed to the loaders, so a run "
        "pins its weights), or 'local-<hash>' that the job fills in for a local folder (part of "
        "the run fingerprint only).",
        json_schema_extra=CHANGES_OUTPUT,
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="float32 on CPU (bf16 on AVX2 is slower and not token-equal to transformers); "
        "bfloat16 on A100s.",
        json_schema_extra=CHANGES_OUTPUT,
    )
    trust_remote_code: bool = Field(
        False, description="Passed to the model loaders.", json_schema_extra=CHANGES_OUTPUT
    )
    placement: Literal["auto", "server", "worker"] = Field(
        "auto",
        description="Where the engine runs. server: in one engine server process per GPU "
        "(per executor without GPUs), started by the first task given that GPU and reached over "
        "a Unix socket; it outlives Spark's idle Python workers, so a model loads once per GPU "
        "per run. worker: inside the Spark Python worker, rebuilt whenever Spark stops an idle "
        "worker (~60 s after an action). auto: server when Spark assigns the task a GPU, else "
        "worker (docs/CLUSTER.md).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    server_idle_timeout_s: float = Field(
        1800.0, gt=0,
        description="An engine server that no task has used for this long shuts down: a "
        "backstop, as it also stops when its executor exits. Keep it above the longest gap "
        "between chunks (commit and write-back), or the next chunk loads the model again.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    vllm: VllmSettings | None = Field(
        None, description="vLLM-only settings; filled with defaults when backend is vllm."
    )
    transformers: TransformersSettings | None = Field(
        None, description="transformers-only settings; filled with defaults when backend is "
        "transformers."
    )

    @model_validator(mode="before")
    @classmethod
    def _selected_backend_only(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        backend = data.get("backend", "vllm")
        if backend not in BACKEND_SETTINGS:
            return data  # the backend field's own error names the choices
        data = dict(data)
        for name, group in BACKEND_SETTINGS.items():
            moved = [key for key in group.model_fields if key in data]
            if moved:
                raise ValueError(f"{', '.join(moved)}: {name} settings now go in engine.{name} "
                                 f"(e.g. engine.{name}.{moved[0]})")
            given = data.get(name)
            if name != backend and given is not None:
                fields = [f"engine.{name}.{key}" for key in given] if isinstance(
                    given, dict) and given else [f"engine.{name}"]
                raise ValueError(f"{', '.join(fields)}: set for backend {name}, but "
                                 f"engine.backend is {backend!r}")
            if name == backend and given is None:
                data[name] = {}
        return data

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

    @property
    def vllm_settings(self) -> VllmSettings:
        """The vLLM group (present whenever backend is vllm)."""
        if self.vllm is None:
            raise ValueError(f"engine.backend is {self.backend!r}: there are no vllm settings")
        return self.vllm
