"""Every setting declares whether it can change the model's output, and the run fingerprint is
built from exactly the settings that say it can: adding a setting without that decision, or
declaring one that the fingerprint then ignores, fails here."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from jobs.config import DescribeConfig, IngestConfig, load_config
from jobs.tables.identity import identify_run
from udfs.fingerprint import covered_settings, fingerprint_inputs
from udfs.prompts import find_prompt
from udfs.settings import SamplingOverrides, SamplingSettings, changes_output

PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "prompts"

# Written out: the settings a run fingerprint covers (with the vLLM backend). Adding one here is
# a decision that every stored row of an unchanged config goes stale (docs/operations.md).
FINGERPRINTED = {
    "sampling.temperature", "sampling.top_p", "sampling.max_tokens",
    "sampling.repetition_penalty", "sampling.seed",
    "engine.backend", "engine.model", "engine.model_id", "engine.revision", "engine.dtype",
    "engine.trust_remote_code", "engine.vllm.max_model_len", "engine.vllm.quantization",
    "engine.vllm.structured_outputs_backend", "engine.vllm.json_compact_whitespace",
    "engine.vllm.seed",
    "images.min_pixels", "images.max_pixels", "images.background_rgb",
}
# One other valid value for each: each must move the fingerprint.
ALTERED = {
    "sampling.temperature": "0.7", "sampling.top_p": "0.9", "sampling.max_tokens": "77",
    "sampling.repetition_penalty": "1.1", "sampling.seed": "5",
    "engine.backend": "transformers", "engine.model": "another/model",
    "engine.model_id": "x/y", "engine.revision": "abc123", "engine.dtype": "bfloat16",
    "engine.trust_remote_code": "true", "engine.vllm.max_model_len": "4096",
    "engine.vllm.quantization": "fp8", "engine.vllm.structured_outputs_backend": "guidance",
    "engine.vllm.json_compact_whitespace": "false", "engine.vllm.seed": "3",
    "images.min_pixels": "6272", "images.max_pixels": "235200",
    "images.background_rgb": "[0, 0, 0]",
}
# Settings that keep the output: changing them must leave the fingerprint alone.
KEPT = {
    "batch_size": "3", "prep_threads": "0", "max_waiting_images": "5", "chunk_size": "7",
    "partitions": "2", "tasks_per_slot": "8", "pipeline_chunks": "false", "plan_run": "abc",
    "engine.vllm.max_num_seqs": "3", "engine.vllm.enforce_eager": "true",
    "engine.vllm.quiet": "false", "engine.vllm.kv_cache_memory_bytes": "67108864",
    "engine.vllm.enable_prefix_caching": "false", "engine.vllm.gpu_memory_utilization": "0.5",
    "images.max_file_bytes": "10", "images.low_visibility_max_side": "9",
    "prompt.register_in_mlflow": "false", "input.filter": "x = 1", "replace": "true",
    "engine.placement": "server", "engine.server_idle_timeout_s": "60",
}


def _models_in(annotation) -> list[type[BaseModel]]:
    """The settings models an annotation holds (``X``, ``X | None``, ``Annotated[X, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _declarations(model: type[BaseModel], prefix: str = "") -> dict[str, bool | None]:
    """Every leaf setting reachable from ``model``, by dotted name, with its declaration."""
    found: dict[str, bool | None] = {}
    for name, field in model.model_fields.items():
        nested = _models_in(field.annotation)
        if nested:
            for sub in nested:
                found.update(_declarations(sub, f"{prefix}{name}."))
        else:
            found[f"{prefix}{name}"] = changes_output(field)
    return found


@pytest.mark.parametrize("root", [DescribeConfig, IngestConfig])
def test_every_setting_declares_whether_it_changes_the_output(root):
    declared = _declarations(root)
    missing = sorted(name for name, decision in declared.items() if decision is None)
    assert not missing, f"settings without CHANGES_OUTPUT or KEEPS_OUTPUT: {missing}"
    assert "spark.conf" in declared  # the walk reaches nested settings


def test_the_walk_reaches_both_backend_groups():
    declared = _declarations(DescribeConfig)
    assert declared["engine.vllm.quantization"] is True
    assert declared["engine.transformers.images_per_call"] is False
    assert declared["sampling.max_tokens"] is True and declared["batch_size"] is False


def test_ingest_has_no_setting_that_changes_the_output():
    assert not any(_declarations(IngestConfig).values())


def test_the_declared_output_settings_are_exactly_the_fingerprinted_ones():
    declared = {n for n, d in _declarations(DescribeConfig).items() if d}
    assert declared == FINGERPRINTED
    config = _config()
    identity = identify_run(config, find_prompt(PROMPTS, "v2"))
    inputs = fingerprint_inputs(find_prompt(PROMPTS, "v2"), identity.sampling, identity.engine,
                                config.images)
    assert set(covered_settings(inputs)) == FINGERPRINTED
    assert set(inputs) == {"layout", "prompt", "sampling", "engine", "images"}
    assert inputs["layout"] == 2


def test_sampling_overrides_offer_every_sampling_field():
    assert list(SamplingOverrides.model_fields) == list(SamplingSettings.model_fields)


def _config(*overrides: str) -> DescribeConfig:
    base = {
        "input_table": "/tmp/candid-decisions/in", "results_table": "/tmp/candid-decisions/out",
        "engine": {"backend": "vllm", "model": "fake-model"},
        "prompt": {"version": "v2", "dir": str(PROMPTS)},
    }
    return load_config(DescribeConfig, base, list(overrides))


def _fingerprint(*overrides: str, version: str = "v2") -> str:
    return identify_run(_config(*overrides), find_prompt(PROMPTS, version)).fingerprint


@pytest.mark.parametrize("name", sorted(FINGERPRINTED))
def test_each_output_setting_moves_the_fingerprint(name):
    assert _fingerprint(f"{name}={ALTERED[name]}") != _fingerprint()


@pytest.mark.parametrize("name", sorted(KEPT))
def test_plumbing_settings_keep_the_fingerprint(name):
    assert _fingerprint(f"{name}={KEPT[name]}") == _fingerprint()


def test_the_json_mode_engine_settings_are_covered_now():
    # Before layout 2 these two changed v3's text without changing its fingerprint.
    plain = _fingerprint(version="v3")
    assert _fingerprint("engine.vllm.json_compact_whitespace=false", version="v3") != plain
    assert _fingerprint("engine.vllm.structured_outputs_backend=guidance", version="v3") != plain


def test_the_unselected_backend_is_not_part_of_the_fingerprint():
    inputs = fingerprint_inputs(
        find_prompt(PROMPTS, "v2"), SamplingSettings(),
        _config("engine.backend=transformers").engine, _config().images,
    )
    assert "vllm" not in inputs["engine"] and inputs["engine"]["transformers"] == {}


def test_a_local_model_is_named_by_its_content_not_by_where_it_lies():
    # The same weights copied to another volume (a revision computed from the files) keep the
    # fingerprint; other weights at the same path, or another hub id, move it.
    def fingerprint(model: str, revision: str | None) -> str:
        overrides = [f"engine.model={model}"] + ([f"engine.revision={revision}"] if revision else [])
        return _fingerprint(*overrides)

    on_dbfs = fingerprint("/dbfs/models/qwen", "local-0123456789abcdef")
    assert fingerprint("/local_disk0/qwen", "local-0123456789abcdef") == on_dbfs
    assert fingerprint("/dbfs/models/qwen", "local-fedcba9876543210") != on_dbfs
    assert fingerprint("Qwen/Qwen2-VL-7B-Instruct", "a1b2c3") != fingerprint(
        "Qwen/Qwen2-VL-2B-Instruct", "a1b2c3")
