"""The tiny model builder: deterministic, Qwen2-VL's special tokens as single ids."""

import json

from jobs.demo.tiny_model import SPECIAL_TOKENS, TinyModelSpec, make_tiny_model


def test_same_seed_builds_byte_identical_weights_and_ids_match_config(tmp_path, tiny_model_dir):
    again = make_tiny_model(tmp_path / "again", TinyModelSpec(seed=0))
    first = json.loads((tiny_model_dir / "candid_tiny_model.json").read_text())
    second = json.loads((again / "candid_tiny_model.json").read_text())
    assert first["weights_sha256"] == second["weights_sha256"]
    assert (tiny_model_dir / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()

    from transformers import AutoConfig, AutoProcessor

    processor = AutoProcessor.from_pretrained(again)
    config = AutoConfig.from_pretrained(again)
    tokenizer = processor.tokenizer
    for token in SPECIAL_TOKENS:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1, token
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    assert tokenizer.convert_tokens_to_ids("<|vision_start|>") == config.vision_start_token_id
    assert config.text_config.vocab_size >= len(tokenizer)
    assert processor.chat_template and "<|im_start|>" in processor.chat_template


def test_other_seed_gives_other_weights(tmp_path, tiny_model_dir):
    other = make_tiny_model(tmp_path / "other", TinyModelSpec(seed=1))
    ours = json.loads((tiny_model_dir / "candid_tiny_model.json").read_text())
    theirs = json.loads((other / "candid_tiny_model.json").read_text())
    assert ours["weights_sha256"] != theirs["weights_sha256"]
