"""The real engines on the tiny model: vLLM (CPU build) and transformers, same interface."""

from pathlib import Path

import pytest

from udfs.prompts import find_prompt

pytestmark = pytest.mark.engine
PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "prompts"


def test_vllm_and_transformers_are_token_for_token_equal(vllm_engine, hf_engine, prepared_samples):
    prompt = find_prompt(PROMPTS, "v2")
    sampling = prompt.sampling.model_copy(update={"max_tokens": 24})
    from_vllm = vllm_engine.generate(prepared_samples, prompt, sampling)
    from_hf = hf_engine.generate(prepared_samples, prompt, sampling)
    assert len(from_vllm) == len(from_hf) == len(prepared_samples)
    for a, b in zip(from_vllm, from_hf):
        # Compare token ids, not text: vLLM drops a trailing incomplete UTF-8 character that
        # transformers decodes as U+FFFD.
        assert a.token_ids == b.token_ids
        assert a.prompt_tokens == b.prompt_tokens
        assert a.finish_reason == b.finish_reason
    # The image matters: with initializer_range 0.1, different images give different outputs.
    assert len({g.token_ids for g in from_vllm}) > len(prepared_samples) // 2


def test_vllm_outputs_respect_max_tokens_and_report_counts(vllm_engine, prepared_samples):
    prompt = find_prompt(PROMPTS, "v2")
    sampling = prompt.sampling.model_copy(update={"max_tokens": 5})
    outputs = vllm_engine.generate(prepared_samples[:3], prompt, sampling)
    for output in outputs:
        assert output.completion_tokens <= 5
        assert output.finish_reason in {"stop", "length"}
        assert output.prompt_tokens > 64  # the instructions plus the image's visual tokens


def test_one_bad_request_does_not_fail_the_batch(vllm_engine, prepared_samples):
    """An image vLLM's processor rejects (aspect ratio over 200:1, which our own checks would
    have stopped before the engine) fails only its own row."""
    from PIL import Image

    from udfs.describe import generate_isolating_failures

    prompt = find_prompt(PROMPTS, "v2")
    sampling = prompt.sampling.model_copy(update={"max_tokens": 4})
    sliver = Image.new("RGB", (6000, 20), (20, 30, 40))
    batch = [prepared_samples[0], sliver, prepared_samples[1]]
    results = generate_isolating_failures(vllm_engine, batch, prompt, sampling)
    assert isinstance(results[1], Exception), results[1]
    assert "Qwen2VLProcessor" in str(results[1])
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)


def test_json_mode_is_constrained_by_the_schema_even_for_a_random_model(vllm_engine, prepared_samples):
    from udfs.outputs import parse_structured

    prompt = find_prompt(PROMPTS, "v3")
    outputs = vllm_engine.generate(prepared_samples[:4], prompt, prompt.sampling)
    parsed = [parse_structured(o.text, prompt.output.json_schema) for o in outputs]
    assert all(p.ok for p in parsed), [(o.finish_reason, p.error, o.text[-80:]) for o, p in zip(outputs, parsed)]
    assert all(o.finish_reason == "stop" for o in outputs)
    assert {p.value["confidence"] for p in parsed} <= {"high", "medium", "low"}
