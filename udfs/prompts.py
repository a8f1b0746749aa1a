"""Versioned prompt specs: loading, rendering to chat messages, and content hashing.

A prompt lives in a YAML file under ``conf/prompts/`` (see ``PromptSpec`` for the fields).
The wording is data; the only layout this module adds is how the parts are joined, which is
fixed so that the hash of the rendered text identifies the prompt exactly.

A JSON prompt declares which of its output fields hold claims, and of what kind (``claims``:
field -> one of ``CLAIM_KINDS``), so the eval and the self-check audit read any JSON prompt
version by its declaration, never by v3's field names (``udfs.evaluation.claims``). Every
property of the schema must be declared (``none`` for a field that claims nothing): a new
field cannot be silently left unread.
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
# What an output field can claim (read by udfs.evaluation.claims.extract_claims_json):
#   object: text naming the subject, read like a description (items, counts, colours); the
#     first object named in an object field is the subject;
#   feature: text (or a list of texts) naming visible parts, read like a description;
#   color: colour words (a string such as "not_visible" names none);
#   count: how many of the subject; an integer is a count, a string ("uncertain") abstains;
#   abstention: items named here are said NOT to be visible: never claims, never
#     hallucinations, and their counts are abstentions;
#   none: not a claim (e.g. a confidence level).
CLAIM_KINDS = ("object", "feature", "color", "count", "abstention", "none")
ClaimKind = Literal["object", "feature", "color", "count", "abstention", "none"]


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
    claims: dict[str, ClaimKind] = Field(
        default_factory=dict,
        description="JSON mode: output field -> the kind of claim it holds (object, feature, "
        "color, count, abstention, none), read by the eval and the audit. Every schema "
        "property must be declared; text mode: leave empty.",
    )

    @model_validator(mode="after")
    def _claims_cover_the_schema(self) -> PromptSpec:
        fields = schema_fields(self.output.json_schema) if self.output.mode == "json" else []
        if self.output.mode != "json":
            if self.claims:
                raise ValueError("claims declares JSON output fields, but output.mode is text: "
                                 "a text output is read as text")
            return self
        missing = [f for f in fields if f not in self.claims]
        if missing:
            example = ", ".join(f"{f}: <kind>" for f in missing)
            raise ValueError(
                f"prompt {self.name}/{self.version}: output field(s) {missing} are not declared "
                f"in claims, so the eval would not read them. Declare each as one of "
                f"{', '.join(CLAIM_KINDS)} (none: holds no claim), e.g. claims: {{{example}}}")
        unknown = [f for f in self.claims if f not in fields]
        if unknown:
            raise ValueError(f"prompt {self.name}/{self.version}: claims names {unknown}, which "
                             f"output.json_schema does not have (its fields: {fields})")
        return self

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
        messages, output mode and schema, and sampling. Wording-only edits change it. A JSON
        prompt's claims declaration is in it too (it changes how the output is read, and the
        Prompt Registry keeps one version per hash); a prompt without one hashes as before.
        The run fingerprint (``udfs.fingerprint``) does not include it: rows stay current."""
        payload: dict[str, Any] = {
            "messages": self.messages(),
            "output": self.output.model_dump(mode="json"),
            "sampling": self.sampling.model_dump(mode="json"),
        }
        if self.claims:
            payload["claims"] = dict(sorted(self.claims.items()))
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def schema_fields(schema: dict[str, Any] | None) -> list[str]:
    """The top-level properties of a JSON schema, in schema order (none: not an object).

    Example:
        >>> schema_fields({"type": "object", "properties": {"subject": {}, "count": {}}})
        ['subject', 'count']
    """
    properties = (schema or {}).get("properties")
    return list(properties) if isinstance(properties, dict) else []


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
