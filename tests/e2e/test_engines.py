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
    for a, b in zip(from_vllm, from_hf, strict=True):
        # Compare token ids, not text: vLLM drops a trailing incomplete UTF-8 character that
        # transformers decodes as U+FFFD.
        assert a.token_ids == b.token_ids
        assert a.prompt_tokens == b.prompt_tokens
        assert a.finish_reason == b.finish_reason
        # The same log-probability for every token: measured at most 4.8e-6 apart (8 images x
        # 24 tokens, float32); 1e-4 leaves room for other CPUs' kernels.
        assert len(a.logprobs) == len(b.logprobs) == len(a.token_ids)
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4
        assert all(lp <= 0 for lp in a.logprobs)
        assert a.min_logprob <= a.mean_logprob < 0
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

    from udfs.engines.base import generate_isolating_failures

    prompt = find_prompt(PROMPTS, "v2")
    sampling = prompt.sampling.model_copy(update={"max_tokens": 4})
    sliver = Image.new("RGB", (6000, 20), (20, 30, 40))
    batch = [prepared_samples[0], sliver, prepared_samples[1]]
    results = generate_isolating_failures(vllm_engine, batch, prompt, sampling)
    assert isinstance(results[1], Exception), results[1]
    assert "Qwen2VLProcessor" in str(results[1])
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)


def test_json_mode_is_constrained_by_the_schema_even_for_a_random_model(vllm_engine, prepared_samples):
    from udfs.outputs.structured import parse_structured

    prompt = find_prompt(PROMPTS, "v3")
    outputs = vllm_engine.generate(prepared_samples[:4], prompt, prompt.sampling)
    parsed = [parse_structured(o.text, prompt.output.json_schema) for o in outputs]
    assert all(p.ok for p in parsed), [(o.finish_reason, p.error, o.text[-80:]) for o, p in zip(outputs, parsed, strict=True)]
    assert all(o.finish_reason == "stop" for o in outputs)
    assert {p.value["confidence"] for p in parsed} <= {"high", "medium", "low"}


def test_streamed_requests_equal_batch_generate_and_share_the_prompt_prefix(
    vllm_engine, prepared_samples
):
    """vLLM's engine loop driven request by request (each joining a batch already running)
    gives the token ids of one ``generate`` call, reuses the instruction prefix's KV, says when
    it first scheduled each request, and reports its scheduler's figures."""
    import time

    from PIL import ImageOps

    from udfs.engines.base import PromptCall, Request

    prompt = find_prompt(PROMPTS, "v2")
    sampling = prompt.sampling.model_copy(update={"max_tokens": 24})
    call = PromptCall(prompt, sampling)
    # Mirrored: pixels this engine has not seen, so only the text before the image can be cached.
    images = [ImageOps.mirror(image) for image in prepared_samples]
    stream = vllm_engine.open_stream()
    streamed, samples, submitted = {}, [], {}
    for key, image in enumerate(images):
        submitted[key] = time.monotonic()
        stream.submit(Request(key, call, image))
        streamed.update(stream.poll())
        samples.append(stream.engine_sample())
    while stream.in_flight:
        streamed.update(stream.poll())
        samples.append(stream.engine_sample())
    batch = vllm_engine.generate(images, prompt, sampling)
    assert sorted(streamed) == list(range(len(images)))
    for key, expected in enumerate(batch):
        assert streamed[key].token_ids == expected.token_ids
        assert streamed[key].finish_reason == expected.finish_reason
        assert streamed[key].prompt_tokens == expected.prompt_tokens
        assert streamed[key].logprobs == pytest.approx(expected.logprobs, abs=1e-5)
        assert submitted[key] <= streamed[key].scheduled_at <= time.monotonic()
    cached = [streamed[key].cached_prompt_tokens for key in range(len(images))]
    # Every request after the first found the same shared prefix in the cache, and only it.
    assert cached[1] > 0 and set(cached[1:]) == {cached[1]}, cached
    assert cached[1] < min(g.prompt_tokens for g in batch)
    # vLLM's own figures while requests ran: some running, KV cache partly used, no preemption
    # (64 MiB of KV cache holds all 8); once all are done, nothing runs or waits.
    busy = samples[:-1]
    assert all(0 < s.kv_cache_usage <= 1 and 1 <= s.running <= 16 for s in busy), samples
    assert {s.preemptions for s in samples} == {0}
    assert (samples[-1].running, samples[-1].waiting) == (0, 0)


def test_describe_streams_rows_through_vllm_in_order_with_cache_counts(
    vllm_engine, tiny_model_dir, sample_images, image_settings, prepared_samples
):
    import pandas as pd

    from tests.conftest import tiny_engine_settings
    from udfs.runner.describe import DescribeTask
    from udfs.runner.task import run_batches

    prompt = find_prompt(PROMPTS, "v2")
    sampling = prompt.sampling.model_copy(update={"max_tokens": 16})
    task = DescribeTask(
        engine=tiny_engine_settings(tiny_model_dir), images=image_settings, prompt=prompt,
        sampling=sampling, batch_size=2,
    )
    paths = [str(p) for p in sample_images.paths]
    frame = pd.DataFrame({"image_id": [f"s{i}" for i in range(len(paths))], "path": paths})
    stats = []
    results = list(run_batches(
        iter([frame.iloc[:3], frame.iloc[3:]]), task, lambda: vllm_engine, on_stats=stats.append
    ))
    assert [len(r) for r in results] == [3, len(paths) - 3]
    out = pd.concat(results, ignore_index=True)
    assert list(out["image_id"]) == list(frame["image_id"]) and (out["status"] == "ok").all()
    expected = vllm_engine.generate(prepared_samples, prompt, sampling)
    assert list(out["description"]) == [g.text for g in expected]
    assert (out["cached_prompt_tokens"].iloc[1:] > 0).all()
    assert list(out["mean_logprob"]) == pytest.approx([g.mean_logprob for g in expected], abs=1e-5)
    assert list(out["min_logprob"]) == pytest.approx([g.min_logprob for g in expected], abs=1e-5)
    assert ((out["queue_wait_ms"] >= 0) & (out["queue_wait_ms"] <= out["latency_ms"])).all()
    (partition,) = stats
    assert partition.rows == len(paths) and partition.requests == len(paths)
    # The engine's own figures reached the partition's stats: 8 requests fit the 16 slots and
    # the 64 MiB KV cache, so all ran at once at some point and nothing was preempted.
    assert partition.preemptions == 0 and partition.engine_running_peak == len(paths)
    assert 0 < partition.kv_cache_usage_mean <= partition.kv_cache_usage_max <= 1
    assert partition.queue_waits == len(paths)
    assert partition.cached_prompt_tokens == out["cached_prompt_tokens"].sum()
    assert 0 < partition.busy_fraction <= 1 and partition.images_per_s > 0


def test_audit_probes_stream_through_vllm_each_with_its_own_prompt(
    vllm_engine, tiny_model_dir, sample_images, image_settings, prepared_samples
):
    """The audit's probes (one request per question, several prompts in flight at once) through
    the real engine's stream give what one ``generate`` call per question gives."""
    import json

    import pandas as pd

    from tests.conftest import tiny_engine_settings
    from udfs.prompts import load_prompt_file
    from udfs.runner.audit import AuditTask, probe_prompt
    from udfs.runner.task import run_frame

    probe = load_prompt_file(PROMPTS / "probes" / "probe_v1.yaml")
    task = AuditTask(engine=tiny_engine_settings(tiny_model_dir), images=image_settings,
                     probe_prompt=probe, n_controls=1)
    paths = [str(p) for p in sample_images.paths[:3]]
    frame = pd.DataFrame({
        "image_id": ["a", "b", "c"], "path": paths,
        "description": ["A red mug.", "Two blue chairs.", "A mug."],
        "structured_json": [None] * 3, "json_mode": [False] * 3,
        "controls": [["car"], ["lamp"], ["car"]],
    })
    out = run_frame(frame, task, lambda: vllm_engine)
    assert (out["status"] == "ok").all()
    for (_, row), image in zip(out.iterrows(), prepared_samples[:3], strict=True):
        detail = json.loads(row["probes_json"])
        assert len(detail) == row["n_claims"] + row["n_controls"] >= 2
        for probe_row in detail:
            (expected,) = vllm_engine.generate(
                [image], probe_prompt(probe, probe_row["question"]), probe.sampling)
            assert probe_row["answer"] == expected.text
            assert probe_row["mean_logprob"] == pytest.approx(expected.mean_logprob, abs=1e-5)
