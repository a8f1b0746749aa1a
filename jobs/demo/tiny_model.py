"""Build a tiny, random-weight Qwen2-VL with a locally trained tokenizer.

No model weights can be downloaded where Candid is developed and tested, so the demo and the
tests use this model. Its architecture, special tokens, chat template and processor are those of
Qwen2-VL-Instruct, so every code path (chat rendering, image tokens, vLLM's Qwen2-VL model,
transformers' generate) is the real one; only the weights are random, so its descriptions are
noise. The build is deterministic: the same seed gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from udfs.settings import QWEN_DEFAULT_MIN_PIXELS

CHAT_TEMPLATE_FILE = Path(__file__).with_name("templates") / "qwen2_vl_chat_template.jinja"
MARKER_FILE = "candid_tiny_model.json"

# Qwen2-VL-Instruct's 14 special tokens, in its own id order.
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)

_WORDS = [
    "a", "an", "the", "this", "that", "one", "two", "three", "some", "many", "few", "small",
    "large", "tiny", "big", "round", "square", "long", "short", "red", "green", "blue",
    "yellow", "white", "black", "grey", "brown", "orange", "purple", "pink", "dark", "light",
    "bright", "pale", "chair", "table", "lamp", "car", "bicycle", "house", "tree", "flower",
    "dog", "cat", "bird", "cup", "bottle", "book", "shoe", "bag", "box", "phone", "screen",
    "window", "door", "wheel", "handle", "button", "leg", "strap", "lid", "drawer", "shelf",
    "wall", "floor", "sky", "is", "are", "has", "have", "with", "on", "in", "under", "over",
    "near", "beside", "behind", "front", "back", "top", "bottom", "left", "right", "visible",
    "clearly", "cannot", "be", "seen", "describe", "image", "subject", "object", "background",
    "edge", "shape", "colour", "wooden", "metal", "plastic", "glass", "fabric", "paper",
    "stone", "smooth", "rough", "shiny", "matte", "striped", "plain", "photo", "picture",
    "thumbnail", "close", "blurry", "sharp", "bright", "dim", "centre", "corner", "side",
    "view", "and", "or", "not"
]


@dataclass(frozen=True)
class TinyModelSpec:
    """Architecture of the tiny model. The constraints come from vLLM's CPU backend: the text
    head_dim must be one its attention supports (32), mrope_section must sum to head_dim / 2."""

    seed: int = 0
    bpe_vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4  # head_dim 32
    num_kv_heads: int = 2
    vision_depth: int = 2
    vision_width: int = 128
    vision_heads: int = 4
    # At 0.02 most images decode to the same repeated token, so tests could not tell whether the
    # image was used at all; at 0.1 different images give different outputs.
    initializer_range: float = 0.1
    max_position_embeddings: int = 4096
    min_pixels: int = QWEN_DEFAULT_MIN_PIXELS
    max_pixels: int = 1024 * 28 * 28


def _training_corpus(seed: int, n_sentences: int = 4000) -> list[str]:
    rng = random.Random(seed)
    sentences = []
    for _ in range(n_sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        text = " ".join(words).capitalize() + rng.choice([".", ".", "!", "?", ",", ":"])
        if rng.random() < 0.2:
            text += f" {rng.randint(0, 999)}"
        sentences.append(text)
    return sentences


def build_tokenizer(spec: TinyModelSpec):
    """Train a byte-level BPE with Qwen2's pre-tokenizer, then add Qwen2-VL's special tokens."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    raw = Tokenizer(models.BPE())
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=spec.bpe_vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_training_corpus(spec.seed), trainer)
    model_state = json.loads(raw.to_str())["model"]
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_state["merges"]
    ]
    tokenizer = Qwen2Tokenizer(
        vocab=model_state["vocab"], merges=merges,
        unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True) for t in SPECIAL_TOKENS]}
    )
    tokenizer.chat_template = CHAT_TEMPLATE_FILE.read_text(encoding="utf-8")
    return tokenizer


def build_model(spec: TinyModelSpec, tokenizer):
    """Random-weight Qwen2VLForConditionalGeneration whose token ids match ``tokenizer``."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64  # round up: at least the tokenizer's size
    head_dim = spec.hidden_size // spec.num_heads
    # Qwen2-VL splits rotary dims 1/4 temporal, 3/8 height, 3/8 width; the sum is head_dim / 2.
    half = head_dim // 2
    mrope_section = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size, "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size, "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads, "num_key_value_heads": spec.num_kv_heads,
            "max_position_embeddings": spec.max_position_embeddings,
            "initializer_range": spec.initializer_range,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0,
                                "mrope_section": mrope_section},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": spec.vision_depth, "embed_dim": spec.vision_width,
            "hidden_size": spec.hidden_size, "num_heads": spec.vision_heads, "mlp_ratio": 2,
            "initializer_range": spec.initializer_range,
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(spec.seed)
    model = Qwen2VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    return model


def build_processor(spec: TinyModelSpec, tokenizer):
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size),
        chat_template=tokenizer.chat_template,
    )


def make_tiny_model(out_dir: str | Path, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Build the tiny model into ``out_dir`` (created) and return its path.

    A marker file records the spec; when it already matches, nothing is rebuilt. From the
    command line: ``candid make-tiny-model build/tiny-qwen2-vl --seed 0``.
    """
    out = Path(out_dir)
    marker = out / MARKER_FILE
    wanted = {"spec": asdict(spec), "template_sha256": _file_sha256(CHAT_TEMPLATE_FILE)}
    if marker.exists() and json.loads(marker.read_text())["build"] == wanted:
        return out
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec)
    model = build_model(spec, tokenizer)
    model.save_pretrained(out)
    build_processor(spec, tokenizer).save_pretrained(out)
    weights = {p.name: _file_sha256(p) for p in sorted(out.glob("*.safetensors"))}
    marker.write_text(json.dumps({"build": wanted, "weights_sha256": weights}, indent=2) + "\n")
    return out


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
