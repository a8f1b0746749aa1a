"""Settings that compose: sampling overrides merged field by field over the prompt's own, engine
settings grouped per backend (a field of another backend is an error naming it), and the one
config builder (a file or a mapping, then ``--set`` overrides, then Python values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.config import ConfigError, DescribeConfig, load_config
from jobs.config_loader import config_data
from jobs.tables.identity import identify_run
from udfs.prompts import find_prompt
from udfs.settings import EngineSettings, SamplingOverrides, SamplingSettings

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "conf" / "demo.yaml"
PROMPTS = REPO / "conf" / "prompts"


def _demo(*overrides: str) -> DescribeConfig:
    return load_config(DescribeConfig, DEMO, [f"prompt.dir={PROMPTS}", *overrides])


def test_a_temperature_override_keeps_v3s_own_max_tokens():
    # The verified bug: this used to reset max_tokens to the default 128 and truncate v3's JSON.
    config = _demo("prompt.version=v3", "sampling.temperature=0.2")
    sampling = identify_run(config, find_prompt(PROMPTS, "v3")).sampling
    assert (sampling.temperature, sampling.max_tokens) == (0.2, 320)
    assert config.sampling.given() == {"temperature": 0.2}


def test_each_prompt_keeps_its_own_fields_under_one_override():
    # compare runs one config over several prompt versions: each merges over its own sampling.
    config = _demo("sampling.seed=9")
    merged = {v: identify_run(config, find_prompt(PROMPTS, v)).sampling for v in ("v2", "v3")}
    assert (merged["v2"].max_tokens, merged["v3"].max_tokens) == (96, 320)
    assert merged["v2"].seed == merged["v3"].seed == 9


def test_no_override_is_the_prompts_sampling():
    for config in (_demo(), _demo("sampling=")):
        assert identify_run(config, find_prompt(PROMPTS, "v2")).sampling == find_prompt(
            PROMPTS, "v2").sampling


def test_an_override_out_of_bounds_names_its_field():
    with pytest.raises(ConfigError, match=r"sampling: Value error, max_tokens: Input should be "
                                          r"greater than or equal to 1"):
        _demo("sampling.max_tokens=0")
    with pytest.raises(ConfigError, match=r"sampling.tempreature: Extra inputs"):
        _demo("sampling.tempreature=0.5")


def test_over_replaces_only_the_given_fields():
    base = SamplingSettings(temperature=0.0, max_tokens=320, seed=4)
    merged = SamplingOverrides(top_p=0.5).over(base)
    assert merged == SamplingSettings(temperature=0.0, top_p=0.5, max_tokens=320, seed=4)


def test_the_selected_backend_gets_its_group_with_defaults():
    vllm = EngineSettings(model="m")
    assert vllm.vllm is not None and vllm.vllm.max_num_seqs == 64 and vllm.transformers is None
    hf = EngineSettings(backend="transformers", model="m")
    assert hf.vllm is None and hf.transformers is not None
    assert hf.transformers.images_per_call == 8
    # A dump validates back to the same settings (tests and the cache key rely on it).
    assert EngineSettings.model_validate(hf.model_dump()) == hf


def test_a_field_of_another_backend_is_an_error_naming_it():
    with pytest.raises(ConfigError) as err:
        _demo("engine.backend=transformers")  # demo.yaml sets engine.vllm.*
    message = str(err.value)
    assert "engine.vllm.enforce_eager" in message and "engine.vllm.max_num_seqs" in message
    assert "engine.backend is 'transformers'" in message
    with pytest.raises(ConfigError, match=r"engine.transformers.images_per_call: set for "
                                          r"backend transformers, but engine.backend is 'vllm'"):
        _demo("engine.transformers.images_per_call=4")


def test_a_flat_backend_field_points_to_its_group():
    with pytest.raises(ConfigError, match=r"max_num_seqs: vllm settings now go in engine.vllm "
                                          r"\(e.g. engine.vllm.max_num_seqs\)"):
        _demo("engine.max_num_seqs=4")


def test_an_unknown_backend_still_lists_the_choices():
    with pytest.raises(ConfigError, match=r"engine.backend: Input should be 'vllm' or "
                                          r"'transformers'"):
        _demo("engine.backend=onnx")


def test_the_builder_takes_a_mapping_then_overrides_then_fields(tmp_path):
    base = {"input_table": str(tmp_path / "in"), "results_table": str(tmp_path / "out"),
            "engine": {"model": "m"}, "batch_size": 2}
    config = load_config(DescribeConfig, base, ["batch_size=5", "chunk_size=9"],
                         chunk_size=11, engine__vllm__max_num_seqs=3)
    assert (config.batch_size, config.chunk_size, config.engine.vllm.max_num_seqs) == (5, 11, 3)
    assert base["batch_size"] == 2 and "vllm" not in base["engine"]  # the base is not touched
    data = config_data(base, engine__dtype="float32")
    assert data["engine"] == {"model": "m", "dtype": "float32"}


def test_the_builder_names_the_file_in_its_errors():
    with pytest.raises(ConfigError, match=rf"invalid configuration in {DEMO}"):
        load_config(DescribeConfig, DEMO, ["batch_size=0"])
    with pytest.raises(ConfigError, match=r"^invalid configuration:"):
        load_config(DescribeConfig, {"engine": {"model": "m"}})
