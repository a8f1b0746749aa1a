"""The module structure holds: no import circles (lazy imports inside functions and imports for
type checking count: they still tie the modules together), ``udfs`` never imports ``jobs``, only
the Spark adapter and GPU pinning in ``udfs`` use pyspark at run time, and every module imports
with no other module of the project loaded (tests/import_alone.py: a forked child per module)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.import_alone import import_each_alone, module_level_imports

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("jobs", "udfs")
# The thin Spark adapter and GPU pinning (TaskContext) are the udfs modules that may use Spark.
UDFS_SPARK_MODULES = {"udfs.runner.spark_udf", "udfs.engines.gpu"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))
    }


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, type_checking: bool = True) -> set[str]:
    """Every module named by an import statement, at any depth (under TYPE_CHECKING too unless
    ``type_checking`` is False)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if not type_checking and _is_type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                strongconnect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return found


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_udfs_never_imports_jobs_and_only_the_adapter_uses_spark():
    modules = _modules()
    for name, path in modules.items():
        if not name.startswith("udfs"):
            continue
        assert not {m for m in _imports(path) if m.split(".")[0] == "jobs"}, name
        if name not in UDFS_SPARK_MODULES:
            at_run_time = _imports(path, type_checking=False)
            assert not {m for m in at_run_time if m.split(".")[0] == "pyspark"}, name


def _third_party_module_level_imports() -> list[str]:
    return sorted({
        name for path in _modules().values() for name in module_level_imports(path)
        if name.split(".")[0] not in PACKAGES
    })


@pytest.mark.timeout(600)
def test_every_module_imports_on_its_own():
    failures = import_each_alone(sorted(_modules()), _third_party_module_level_imports(), REPO)
    assert failures == []


def test_each_module_is_imported_with_no_other_module_of_the_project_loaded(tmp_path):
    """The fork server's contract, on throwaway modules: a failing import is reported with its
    traceback, what the preload did is there in every child, and what an earlier child imported
    or changed is not there for the next."""
    (tmp_path / "preloaded.py").write_text("import builtins\nbuiltins.SET_BY_PRELOAD = 1\n")
    (tmp_path / "first.py").write_text("import builtins\nbuiltins.LEFT_BY_FIRST = 1\n")
    (tmp_path / "second.py").write_text(
        "import builtins, sys\n"
        "assert 'first' not in sys.modules\n"
        "assert not hasattr(builtins, 'LEFT_BY_FIRST')\n"
        "assert builtins.SET_BY_PRELOAD == 1\n"
    )
    (tmp_path / "broken.py").write_text("raise ValueError('broken on import')\n")
    modules = ["first", "second", "broken", "first", "second"]
    failures = import_each_alone(modules, ["preloaded"], tmp_path)
    assert [(module, code) for module, code, _ in failures] == [("broken", 1)]
    assert "ValueError: broken on import" in failures[0][2]
