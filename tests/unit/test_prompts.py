import hashlib
import json
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


# --- the claims declaration of a JSON prompt -----------------------------------------------------
def _json_prompt(tmp_path, **changes):
    raw = yaml.safe_load((PROMPTS / "describe_v3.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "describe_v4.yaml"
    path.write_text(yaml.safe_dump({**raw, "version": "v4"}, sort_keys=False))
    return path


def test_v3_declares_what_each_output_field_claims():
    assert find_prompt(PROMPTS, "v3").claims == {
        "subject": "object", "colors": "color", "count": "count",
        "visible_features": "feature", "not_visible": "abstention", "confidence": "none"}


def test_a_json_prompt_without_a_claims_declaration_fails_to_load(tmp_path):
    path = _json_prompt(tmp_path)
    raw = yaml.safe_load(path.read_text())
    del raw["claims"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ValueError, match=r"prompt describe/v4: output field\(s\) \['subject', "
                                         r"'colors', 'count', 'visible_features', 'not_visible', "
                                         r"'confidence'\] are not declared in claims"):
        load_prompt_file(path)


def test_every_schema_field_must_be_declared_and_only_those(tmp_path):
    v3 = yaml.safe_load((PROMPTS / "describe_v3.yaml").read_text())
    partial = {k: v for k, v in v3["claims"].items() if k != "not_visible"}
    with pytest.raises(ValueError, match=r"\['not_visible'\] are not declared in claims.*"
                                         r"e\.g\. claims: \{not_visible: <kind>\}"):
        load_prompt_file(_json_prompt(tmp_path, claims=partial))
    extra = {**v3["claims"], "shape": "object"}
    with pytest.raises(ValueError, match=r"claims names \['shape'\], which output.json_schema "
                                         "does not have"):
        load_prompt_file(_json_prompt(tmp_path, claims=extra))
    with pytest.raises(ValueError, match="claims"):
        load_prompt_file(_json_prompt(tmp_path, claims={**v3["claims"], "count": "number"}))


def test_a_text_prompt_declares_no_claims(tmp_path):
    raw = yaml.safe_load((PROMPTS / "describe_v2.yaml").read_text())
    raw["claims"] = {"description": "feature"}
    path = tmp_path / "v2.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="output.mode is text: a text output is read as text"):
        load_prompt_file(path)


def test_the_declaration_is_in_the_content_hash_of_json_prompts_only():
    v3 = find_prompt(PROMPTS, "v3")
    swapped = v3.model_copy(update={"claims": {**v3.claims, "confidence": "feature"}})
    assert swapped.content_hash() != v3.content_hash()
    # A text prompt has none, and hashes as it did before declarations existed.
    v2 = find_prompt(PROMPTS, "v2")
    assert v2.claims == {}
    payload = {"messages": v2.messages(), "output": v2.output.model_dump(mode="json"),
               "sampling": v2.sampling.model_dump(mode="json")}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    assert v2.content_hash() == hashlib.sha256(blob).hexdigest()[:16]
