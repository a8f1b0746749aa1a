"""Prompt specs in MLflow's Prompt Registry.

Each Candid prompt family ``describe`` is registered as ``candid-describe``; each distinct
content (``PromptSpec.content_hash``) is one registry version, so registering the same file
twice reuses its version. The whole spec travels in a version tag, so ``prompts:/name/3`` or
``prompts:/name@alias`` loads back exactly what ran, sampling and schema included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from udfs.prompts import PromptSpec

REGISTRY_PREFIX = "candid-"
TAG_HASH = "candid.prompt_hash"
TAG_VERSION = "candid.prompt_version"
TAG_SPEC = "candid.spec"
REGISTRY_URI_PREFIX = "prompts:/"


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
    """Register ``spec`` unless a version with the same content hash exists."""
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
        raise ValueError(f"{uri}: stored spec hash {spec.content_hash()} != tag {tags.get(TAG_HASH)}")
    return spec
