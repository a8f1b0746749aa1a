"""Render a prompt spec to the model's own chat format, once per prompt."""

from __future__ import annotations

from udfs.prompts import PromptSpec


class ChatRenderer:
    """Applies the model processor's chat template. Both engines render through this, so they
    see the same prompt text, and the text follows whatever template the model ships with."""

    def __init__(self, processor):
        self._processor = processor
        self._cache: dict[str, str] = {}

    def render(self, prompt: PromptSpec) -> str:
        key = prompt.content_hash()
        if key not in self._cache:
            self._cache[key] = self._processor.apply_chat_template(
                prompt.messages(), tokenize=False, add_generation_prompt=True
            )
        return self._cache[key]


def load_processor(model: str, trust_remote_code: bool, revision: str | None = None):
    """The model's Hugging Face processor (tokenizer + image processor + chat template)."""
    try:
        from transformers import AutoProcessor
    except ImportError as err:
        raise ImportError(
            "Candid's engines need transformers: pip install 'candid-vlm[hf]' "
            "(or 'candid-vlm[gpu]')"
        ) from err
    pinned = {"revision": revision} if revision is not None else {}
    return AutoProcessor.from_pretrained(model, trust_remote_code=trust_remote_code, **pinned)
