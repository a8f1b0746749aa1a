"""Prompt resolution and registration against a real local MLflow store (sqlite)."""

from pathlib import Path

import pytest

from jobs.config import ConfigError, DescribeConfig, PromptRef, load_config
from jobs.tracking.prompt_store import load_registered_prompt, register_prompt, resolve_prompt
from udfs.prompts import find_prompt

PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "prompts"


@pytest.fixture
def tracking_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_same_content_reuses_its_version_and_new_content_adds_one(tracking_uri):
    v2 = find_prompt(PROMPTS, "v2")
    first = register_prompt(v2, tracking_uri)
    again = register_prompt(v2, tracking_uri)
    assert first.created and not again.created
    assert (again.name, again.version) == ("candid-describe", first.version)
    v3 = register_prompt(find_prompt(PROMPTS, "v3"), tracking_uri)
    assert v3.created and v3.version == first.version + 1
    edited = v2.model_copy(update={"instructions": v2.instructions + " Be brief."})
    assert register_prompt(edited, tracking_uri).version == v3.version + 1


def test_load_by_version_and_alias_round_trips_the_whole_spec(tracking_uri):
    import mlflow

    v3 = find_prompt(PROMPTS, "v3")
    registered = register_prompt(v3, tracking_uri)
    loaded = load_registered_prompt(registered.uri, tracking_uri)
    assert loaded == v3 and loaded.content_hash() == v3.content_hash()
    mlflow.genai.set_prompt_alias("candid-describe", "production", registered.version)
    assert load_registered_prompt("prompts:/candid-describe@production", tracking_uri) == v3


def test_config_can_name_a_registry_uri(tracking_uri, tmp_path):
    registered = register_prompt(find_prompt(PROMPTS, "v2"), tracking_uri)
    config = load_config(DescribeConfig, {
        "input_table": str(tmp_path / "in"), "results_table": str(tmp_path / "out"),
        "engine": {"model": "x"}, "prompt": {"uri": registered.uri},
        "mlflow": {"tracking_uri": tracking_uri},
    })
    assert resolve_prompt(config.prompt, tracking_uri).key == "describe/v2"


def test_foreign_or_malformed_uris_are_clear_errors(tracking_uri):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.genai.register_prompt(name="someone-else", template="Hello {{name}}")
    with pytest.raises(ValueError, match="not registered by Candid"):
        load_registered_prompt("prompts:/someone-else/1", tracking_uri)
    with pytest.raises(ValueError, match="must start with 'prompts:/'"):
        load_registered_prompt("models:/x/1", tracking_uri)


def test_a_json_schema_the_grammar_backends_do_not_all_enforce_is_refused(tracking_uri, tmp_path):
    v3 = (PROMPTS / "describe_v3.yaml").read_text()
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "v3.yaml").write_text(v3.replace("maxLength: 120", "pattern: '^[a-z]+$'"))
    with pytest.raises(ConfigError, match=r"uses \['pattern'\], which vLLM's grammar backends"):
        resolve_prompt(PromptRef(version="v3", dir=str(folder)), tracking_uri)
    (folder / "v3.yaml").write_text(v3.replace("type: object", "type: 7", 1))
    with pytest.raises(ConfigError, match="not a valid JSON schema"):
        resolve_prompt(PromptRef(version="v3", dir=str(folder)), tracking_uri)
