from pathlib import Path

import pytest
import yaml

from udfs.prompts import IMAGE_PART, PromptSpec, find_prompt, load_prompt_file

PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "prompts"


def test_v1_and_v2_ship_and_validate():
    v1 = find_prompt(PROMPTS, "v1")
    v2 = find_prompt(PROMPTS, "v2")
    assert (v1.key, v2.key) == ("describe/v1", "describe/v2")
    # v1 is the forced-category baseline: fixed lists, no negative rules.
    assert "one of [" in v1.instructions and not v1.negative_rules
    # v2 is grounded: describe what you see, negative instructions, scope rules.
    text = v2.user_text()
    assert "Describe what you see" in text
    assert "Do NOT guess counts" in text and "Do NOT assume features" in text
    assert "Describe ONLY the main subject" in text
    assert v2.forbids_counts and v2.restricts_scope


def test_instructions_come_before_the_image_for_prefix_caching():
    messages = find_prompt(PROMPTS, "v2").messages()
    user = messages[-1]["content"]
    assert user[-1] == IMAGE_PART
    assert [part["type"] for part in user] == ["text", "image"]
    assert messages[0]["role"] == "system"


def test_hash_is_stable_and_changes_with_wording_or_sampling():
    spec = find_prompt(PROMPTS, "v2")
    again = load_prompt_file(PROMPTS / "describe_v2.yaml")
    assert spec.content_hash() == again.content_hash()
    reworded = spec.model_copy(update={"instructions": spec.instructions + " Be brief."})
    resampled = spec.model_copy(
        update={"sampling": spec.sampling.model_copy(update={"max_tokens": 7})}
    )
    hashes = {spec.content_hash(), reworded.content_hash(), resampled.content_hash()}
    assert len(hashes) == 3


def test_unknown_field_in_prompt_file_is_rejected(tmp_path):
    raw = yaml.safe_load((PROMPTS / "describe_v2.yaml").read_text())
    raw["temprature"] = 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="temprature"):
        load_prompt_file(bad)


def test_json_mode_requires_a_schema():
    with pytest.raises(ValueError, match="json_schema is required"):
        PromptSpec(name="x", version="v9", system="s", instructions="i", output={"mode": "json"})


def test_find_prompt_names_known_versions_when_missing():
    with pytest.raises(ValueError, match="no prompt version 'v99'.*describe/v2"):
        find_prompt(PROMPTS, "v99")
