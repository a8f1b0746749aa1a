"""``candid describe --explain``'s content: what a run would use, from the same function the run
uses (``identify_run``), as YAML."""

from __future__ import annotations

from pathlib import Path

import yaml

from jobs.config import DescribeConfig, load_config
from jobs.describe.explain import explain, explain_text
from jobs.tables.identity import identify_run
from udfs.prompts import find_prompt

REPO = Path(__file__).resolve().parents[2]
PROMPTS = REPO / "conf" / "prompts"


def _config(tmp: Path, *overrides: str) -> DescribeConfig:
    return load_config(DescribeConfig, REPO / "conf" / "demo.yaml", [
        f"prompt.dir={PROMPTS}", f"input_table={tmp / 'in'}", f"results_table={tmp / 'out'}",
        *overrides,
    ])


def test_explain_shows_the_merged_sampling_and_where_it_came_from(tmp_path):
    config = _config(tmp_path, "prompt.version=v3", "sampling.temperature=0.2")
    prompt = find_prompt(PROMPTS, "v3")
    shown = explain(config, prompt)
    assert list(shown) == ["prompt", "sampling", "sampling_set_by_config", "engine", "images",
                           "feeding", "tables", "fingerprint"]
    assert shown["prompt"] == {"name": "describe", "version": "v3",
                               "hash": prompt.content_hash(), "source": str(PROMPTS)}
    assert shown["sampling"] == {"temperature": 0.2, "top_p": 1.0, "max_tokens": 320,
                                 "repetition_penalty": 1.0, "seed": 0}
    assert shown["sampling_set_by_config"] == ["temperature"]
    assert shown["feeding"] == {"batch_size": 8, "prep_threads": 2, "max_waiting_images": 64,
                                "partitions": None, "chunk_size": 1000}
    assert shown["tables"]["scope"] == "describe/v3 on candid/tiny-qwen2-vl-random"


def test_explain_shows_the_selected_backend_only_and_a_local_models_revision(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2_vl"}')
    config = _config(tmp_path, f"engine.model={model}")
    shown = explain(config, find_prompt(PROMPTS, "v2"))
    engine = shown["engine"]
    assert "transformers" not in engine and engine["vllm"]["max_num_seqs"] == 16
    assert engine["model"] == str(model) and engine["revision"].startswith("local-")
    assert shown["fingerprint"]["inputs"]["engine"]["revision"] == engine["revision"]


def test_the_fingerprint_shown_is_the_runs_with_its_inputs(tmp_path):
    config = _config(tmp_path, "engine.vllm.json_compact_whitespace=false")
    prompt = find_prompt(PROMPTS, "v2")
    shown = explain(config, prompt)["fingerprint"]
    assert shown["value"] == identify_run(config, prompt).fingerprint
    inputs = shown["inputs"]
    assert inputs["layout"] == 2 and inputs["prompt"]["messages"] == prompt.messages()
    assert inputs["engine"]["vllm"] == {
        "max_model_len": 2048, "quantization": None, "structured_outputs_backend": "xgrammar",
        "json_compact_whitespace": False, "seed": 0,
    }
    assert inputs["images"] == {"min_pixels": 3136, "max_pixels": 200704,
                                "background_rgb": [255, 255, 255]}


def test_the_text_is_yaml_of_the_same_content(tmp_path):
    config = _config(tmp_path)
    prompt = find_prompt(PROMPTS, "v2")
    assert yaml.safe_load(explain_text(config, prompt)) == explain(config, prompt)
