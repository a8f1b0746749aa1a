"""What the model folder says, read without loading the model: its revision (the same on the
driver and every executor, or the run refuses), its weight bytes and the KV cache one token
takes (for the preflight's memory check, ``candid doctor``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# Files whose bytes identify a local model folder's weights (sizes stand in for the weights).
_REVISION_FILES = ("config.json", "generation_config.json", "tokenizer.json", "chat_template.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_SAMPLED_BYTES = 1 << 20


def local_model_revision(folder: Path) -> str:
    """``local-`` + 16 hex of the config files, and of each weight file's name, size, first
    and last MiB (the weights of a 7B model are not read whole to start a run)."""
    digest = hashlib.sha256()
    for name in _REVISION_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    for weights in sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES):
        size = weights.stat().st_size
        digest.update(json.dumps([weights.name, size]).encode())
        with weights.open("rb") as handle:
            digest.update(handle.read(_SAMPLED_BYTES))
            handle.seek(max(0, size - _SAMPLED_BYTES))
            digest.update(handle.read(_SAMPLED_BYTES))
    return f"local-{digest.hexdigest()[:16]}"


def weight_bytes(folder: Path) -> int:
    """Bytes of the folder's weight files (what the GPU must hold at the checkpoint's dtype)."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES)


def kv_bytes_per_token(config: dict, dtype_bytes: int) -> int:
    """KV-cache bytes of one token: keys and values of every layer's KV heads, from a
    ``config.json`` (Qwen2-VL keeps the language model's fields at the top level or under
    ``text_config``)."""
    text = config.get("text_config") or config
    layers = text["num_hidden_layers"]
    heads = text["num_attention_heads"]
    kv_heads = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or text["hidden_size"] // heads
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))
