"""Import each module in an interpreter that has imported no other module of the project.

A fresh ``python -c "import m"`` per module spends most of its time importing pandas, pydantic
and numpy again (126 modules: about 32 CPU-seconds here). Instead, one fresh interpreter imports
the third-party modules named at module level, then forks one child per module to import. Each
child starts as that interpreter: no ``jobs`` or ``udfs`` module loaded, ``sys.path[0]`` the
working folder, as under ``python -c``. What this can hide and a fresh interpreter would not: a
module that uses a third-party submodule at import time without importing it, when another
project module's import of that submodule is in the preload list. The preload holds only what
project modules import at module level (``module_level_imports``), so such a use would have to
be of one of those few names.

The server is this file's own text, run with ``python -c`` (which is what makes ``sys.path[0]``
the working folder): its ``__main__`` block reads the preload and the modules from its
arguments and prints the failures as JSON.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

# Children importing at once: the cores this machine has.
CHILDREN = 2
TRACEBACK_CHARS = 2000


def module_level_imports(path: Path) -> set[str]:
    """Modules named by the import statements at a module's top level (not inside functions,
    not relative)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def import_each_alone(modules: list[str], preload: list[str], cwd: Path) -> list[tuple]:
    """``(module, exit code, end of traceback)`` for each module whose import failed."""
    done = subprocess.run(
        [sys.executable, "-c", Path(__file__).read_text(encoding="utf-8"),
         json.dumps(preload), json.dumps(modules)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-TRACEBACK_CHARS:]
    return [tuple(failure) for failure in json.loads(done.stdout.splitlines()[-1])]


def _import_in_child(module: str, write_end: int) -> None:
    """In a forked child: import ``module``; on failure, its traceback goes to ``write_end``.
    Never returns."""
    import importlib
    import traceback

    code = 0
    try:
        importlib.import_module(module)
    except BaseException:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are failures too
        code = 1
        os.write(write_end, traceback.format_exc()[-TRACEBACK_CHARS:].encode())
    os._exit(code)


def _reap_one(running: dict[int, tuple[str, int]], failures: list) -> None:
    pid, status = os.wait()
    module, read_end = running.pop(pid)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        failures.append((module, code, text))


def _serve(preload: list[str], modules: list[str]) -> list[tuple]:
    import contextlib
    import importlib

    for name in preload:
        # A preload that fails is left out: the module that needs it fails in its own child,
        # with its own traceback.
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    sys.stdout.flush()  # else each child would inherit, and could write, what is buffered
    sys.stderr.flush()
    running: dict[int, tuple[str, int]] = {}
    failures: list[tuple] = []
    for module in modules:
        if len(running) >= CHILDREN:
            _reap_one(running, failures)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _import_in_child(module, write_end)
        os.close(write_end)
        running[pid] = (module, read_end)
    while running:
        _reap_one(running, failures)
    return failures


if __name__ == "__main__":
    print(json.dumps(_serve(json.loads(sys.argv[1]), json.loads(sys.argv[2]))))
