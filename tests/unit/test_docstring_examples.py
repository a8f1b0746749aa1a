"""Every ``>>>`` example in jobs/ and udfs/ runs and shows what it says (like Spark's own
doctests): an example that drifted from the code fails here."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts)
    for package in ("jobs", "udfs") for path in (REPO / package).rglob("*.py")
    if path.name != "__init__.py" and ">>>" in path.read_text(encoding="utf-8")
)


def test_examples_are_found():
    # The collection itself must work: these modules are known to carry examples.
    assert {"udfs.prompts", "udfs.outputs.guardrails", "udfs.outputs.tally", "jobs.tracking.redaction"} <= set(MODULES)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name, monkeypatch):
    monkeypatch.chdir(REPO)  # examples name files relative to the repository (conf/prompts)
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
