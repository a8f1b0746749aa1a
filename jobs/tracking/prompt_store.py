"""Where the driver gets its prompts: the prompt folder or MLflow's Prompt Registry, checked
before Spark starts.

``resolve_prompt`` is the one way in: it loads the spec a ``PromptRef`` names and refuses one
that cannot work (a guardrail that never fires for it, a JSON schema that is invalid or uses
keywords vLLM's grammar backends do not all enforce). ``udfs.prompts`` keeps the pure spec and
its rendering.

Registry: each Candid prompt family ``describe`` is registered as ``candid-describe``; each
distinct content (``PromptSpec.content_hash``) is one registry version, so registering the same
file twice reuses its version. The whole spec travels in a version tag, so ``prompts:/name/3`` or
``prompts:/name@alias`` loads back exactly what ran, sampling and schema included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from jobs.config import ConfigError, PromptRef
from jobs.tracking.redaction import redact_text
from udfs.outputs import guardrails
from udfs.outputs.structured import check_schema, non_portable_keywords
from udfs.prompts import PromptSpec, find_prompt

REGISTRY_PREFIX = "candid-"
TAG_HASH = "candid.prompt_hash"
TAG_VERSION = "candid.prompt_version"
TAG_SPEC = "candid.spec"
REGISTRY_URI_PREFIX = "prompts:/"


def resolve_prompt(ref: PromptRef, tracking_uri: str) -> PromptSpec:
    """The prompt spec ``ref`` names, checked.

    Raises:
        ConfigError: the prompt cannot be found or loaded, or cannot work as written.
    """
    try:
        prompt = load_registered_prompt(ref.uri, tracking_uri) if ref.uri else find_prompt(
            ref.dir, ref.version, ref.name
        )
    except (OSError, ValueError) as err:
        raise ConfigError(f"prompt: {err}") from err
    except Exception as err:  # noqa: BLE001 - MLflow's errors quote the tracking URI
        raise ConfigError(redact_text(f"prompt {ref.uri}: {type(err).__name__}: {err}")) from err
    problems = guardrails.check_prompt(prompt) + _schema_problems(prompt)
    if problems:
        raise ConfigError(f"prompt {prompt.key}: " + "; ".join(problems))
    return prompt


def resolve_version(ref: PromptRef, version: str, tracking_uri: str) -> PromptSpec:
    """Another version from the same prompt folder (``candid compare --prompts v1,v2``)."""
    return resolve_prompt(PromptRef(version=version, dir=ref.dir), tracking_uri)


def _schema_problems(prompt: PromptSpec) -> list[str]:
    schema = prompt.output.json_schema
    if prompt.output.mode != "json" or schema is None:
        return []
    try:
        check_schema(schema)
    except ValueError as err:
        return [f"output.json_schema is not a valid JSON schema: {err}"]
    keywords = non_portable_keywords(schema)
    if keywords:
        return [f"output.json_schema uses {keywords}, which vLLM's grammar backends do not all "
                "enforce: the model could break the schema unnoticed"]
    return []


@dataclass(frozen=True)
class RegisteredPrompt:
    name: str
    version: int
    created: bool

    @property
    def uri(self) -> str:
        return f"{REGISTRY_URI_PREFIX}{self.name}/{self.version}"


def registry_name(spec: PromptSpec) -> str:
    return f"{REGISTRY_PREFIX}{spec.name}"


def _use(tracking_uri: str):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def find_registered(spec: PromptSpec, tracking_uri: str) -> RegisteredPrompt | None:
    """The registry version holding exactly this content, if any."""
    from mlflow.exceptions import MlflowException

    client = _use(tracking_uri)
    name, wanted = registry_name(spec), spec.content_hash()
    token = None
    while True:
        try:
            page = client.search_prompt_versions(name, max_results=100, page_token=token)
        except MlflowException as err:
            if "not found" in str(err).lower():
                return None
            raise
        for version in page:
            if (version.tags or {}).get(TAG_HASH) == wanted:
                return RegisteredPrompt(name, int(version.version), created=False)
        token = getattr(page, "token", None)
        if not token:
            return None


def register_prompt(spec: PromptSpec, tracking_uri: str) -> RegisteredPrompt:
    """Register ``spec`` unless a version with the same content hash exists. Called through
    ``jobs.tracking.runs.RunTracker.register_prompt`` (error guard, redaction)."""
    import mlflow

    existing = find_registered(spec, tracking_uri)
    if existing is not None:
        return existing
    template = [
        {"role": m["role"], "content": "".join(p.get("text", "<image>") for p in m["content"])}
        for m in spec.messages()
    ]
    version = mlflow.genai.register_prompt(
        name=registry_name(spec),
        template=template,
        commit_message=f"{spec.version}: {spec.description}"[:500],
        tags={
            TAG_HASH: spec.content_hash(),
            TAG_VERSION: spec.version,
            TAG_SPEC: spec.model_dump_json(),
        },
        response_format=spec.output.json_schema,
    )
    return RegisteredPrompt(registry_name(spec), int(version.version), created=True)


def load_registered_prompt(uri: str, tracking_uri: str) -> PromptSpec:
    """Load ``prompts:/name/N`` or ``prompts:/name@alias`` back into a PromptSpec.

    Raises:
        ValueError: the URI is malformed, or the version was not registered by Candid, or its
            stored spec no longer matches its recorded hash.
    """
    import mlflow

    if not uri.startswith(REGISTRY_URI_PREFIX):
        raise ValueError(f"prompt uri must start with {REGISTRY_URI_PREFIX!r}, got {uri!r}")
    _use(tracking_uri)
    version = mlflow.genai.load_prompt(uri)
    tags = version.tags or {}
    if TAG_SPEC not in tags:
        raise ValueError(f"{uri} was not registered by Candid (no {TAG_SPEC} tag)")
    spec = PromptSpec.model_validate(json.loads(tags[TAG_SPEC]))
    if spec.content_hash() != tags.get(TAG_HASH):
        raise ValueError(
            f"{uri}: stored spec hash {spec.content_hash()} != tag {tags.get(TAG_HASH)}"
        )
    return spec
