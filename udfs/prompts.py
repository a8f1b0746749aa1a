"""Versioned prompt specs: loading, rendering to chat messages, and content hashing.

A prompt lives in a YAML file under ``conf/prompts/`` (see ``PromptSpec`` for the fields).
The wording is data; the only layout this module adds is how the parts are joined, which is
fixed so that the hash of the rendered text identifies the prompt exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from udfs.settings import SamplingSettings, StrictModel

# The user turn lists the fixed instructions first and the image last: every request then
# shares one long token prefix, which vLLM's prefix cache computes once per worker.
IMAGE_PART: dict[str, str] = {"type": "image"}
RULES_HEADING = "Rules:"


class OutputSpec(StrictModel):
    """What the model is asked to produce."""

    mode: Literal["text", "json"] = Field(
        "text", description="text: free description; json: decoded under `json_schema`."
    )
    json_schema: dict[str, Any] | None = Field(
        None, description="JSON schema for mode json; fields may allow 'not_visible'/'uncertain'."
    )

    @model_validator(mode="after")
    def _schema_matches_mode(self) -> OutputSpec:
        if self.mode == "json" and not self.json_schema:
            raise ValueError("output.json_schema is required when output.mode is 'json'")
        if self.mode == "text" and self.json_schema:
            raise ValueError("output.json_schema is only allowed when output.mode is 'json'")
        return self


class PromptSpec(StrictModel):
    """One versioned prompt: wording, sampling defaults, output mode and guardrails."""

    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Prompt family name.")
    version: str = Field(..., pattern=r"^v[0-9]+$", description="Version label, e.g. v2.")
    description: str = Field("", description="Why this version exists; shown in reviews.")
    system: str = Field(..., min_length=1, description="System message.")
    instructions: str = Field(..., min_length=1, description="What to do, before the image.")
    negative_rules: list[str] = Field(
        default_factory=list, description="Things the model must NOT do (no guessing counts...)."
    )
    scope_rules: list[str] = Field(
        default_factory=list, description="What to describe and what to ignore."
    )
    sampling: SamplingSettings = Field(
        default_factory=SamplingSettings, description="Sampling defaults for this prompt."
    )
    output: OutputSpec = Field(default_factory=OutputSpec, description="Output mode.")
    expected_language: str = Field("en", description="Language the output must be in.")
    guardrails: list[str] = Field(
        default_factory=list, description="Guardrail ids applied to every output of this prompt."
    )
    forbids_counts: bool = Field(
        False, description="True when the rules forbid guessing counts (enables a guardrail)."
    )
    restricts_scope: bool = Field(
        False,
        description="True when the rules restrict scope to the subject (enables a guardrail).",
    )

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"

    def user_text(self) -> str:
        """The user turn's text, as the model sees it before the image."""
        parts = [self.instructions.strip()]
        rules = [r.strip() for r in (*self.negative_rules, *self.scope_rules) if r.strip()]
        if rules:
            parts.append("\n".join([RULES_HEADING, *(f"- {r}" for r in rules)]))
        return "\n\n".join(parts)

    def messages(self) -> list[dict[str, Any]]:
        """OpenAI/HF-style chat messages with one image placeholder after the instructions."""
        return [
            {"role": "system", "content": [{"type": "text", "text": self.system.strip()}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": self.user_text()}, dict(IMAGE_PART)],
            },
        ]

    def content_hash(self) -> str:
        """sha256 (16 hex) of everything that changes what the model is asked: rendered
        messages, output mode and schema, and sampling. Wording-only edits change it."""
        payload = {
            "messages": self.messages(),
            "output": self.output.model_dump(mode="json"),
            "sampling": self.sampling.model_dump(mode="json"),
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_prompt_file(path: str | Path) -> PromptSpec:
    """Load and validate one prompt YAML file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the YAML is not a mapping or a field is invalid (pydantic names it).
    """
    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a prompt file must be a YAML mapping, got {type(raw).__name__}")
    return PromptSpec.model_validate(raw)


def find_prompt(prompt_dir: str | Path, version: str, name: str | None = None) -> PromptSpec:
    """Find the prompt with ``version`` (and ``name`` when given) among ``prompt_dir``'s files.

    Example:
        >>> find_prompt("conf/prompts", "v2").key
        'describe/v2'
    """
    prompt_dir = Path(prompt_dir)
    matches = []
    for file in sorted(prompt_dir.glob("*.yaml")):
        spec = load_prompt_file(file)
        if spec.version == version and (name is None or spec.name == name):
            matches.append(spec)
    if not matches:
        known = sorted(load_prompt_file(f).key for f in prompt_dir.glob("*.yaml"))
        raise ValueError(f"no prompt version {version!r} in {prompt_dir}; known: {known}")
    if len(matches) > 1:
        raise ValueError(
            f"prompt version {version!r} is ambiguous in {prompt_dir}: "
            f"{[m.key for m in matches]}; name one with prompt.name"
        )
    return matches[0]
