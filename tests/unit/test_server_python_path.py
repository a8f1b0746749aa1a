"""The engine server's PYTHONPATH: the worker's ``sys.path`` less the folders packages insert
from inside site-packages. Found in a fresh-clone CI run: a worker's ``sys.path`` held
``site-packages/cv2`` (OpenCV puts it there while it bootstraps), the server got it first on its
PYTHONPATH, ``cv2/typing`` hid the standard library's ``typing``, and the server died on start."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from udfs.engines.server.client import server_python_path


def test_folders_inside_site_packages_are_dropped_and_the_rest_keeps_its_order():
    path = [
        "", "/repo", "/env/lib/python3.11/site-packages/cv2",
        "/usr/lib/python311.zip", "/usr/lib/python3.11",
        "/env/lib/python3.11/site-packages", "/env/lib/python3.11/site-packages/cv2/python-3.11",
        "/usr/lib/python3/dist-packages", "/usr/lib/python3/dist-packages/pkg",
        "/spark/work/app-1/0/candid_tests.zip", "/env/lib/python3.11/site-packages-extra",
    ]
    assert server_python_path(path).split(os.pathsep) == [
        "/repo", "/usr/lib/python311.zip", "/usr/lib/python3.11",
        "/env/lib/python3.11/site-packages", "/usr/lib/python3/dist-packages",
        "/spark/work/app-1/0/candid_tests.zip", "/env/lib/python3.11/site-packages-extra",
    ]


def _typing_in_a_new_interpreter(python_path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import typing, numpy; print(typing.__file__)"],
        env={**os.environ, "PYTHONPATH": python_path}, capture_output=True, text=True,
        timeout=120, cwd="/",
    )


def test_a_worker_path_holding_opencvs_folder_still_starts_an_interpreter():
    cv2_folder = importlib.util.find_spec("cv2").submodule_search_locations[0]
    assert Path(cv2_folder, "typing", "__init__.py").exists()  # what hides the stdlib's
    worker_path = [cv2_folder, *sys.path]

    # Passed as it was, the new interpreter takes OpenCV's typing for the standard one...
    broken = _typing_in_a_new_interpreter(os.pathsep.join(p for p in worker_path if p))
    assert broken.returncode != 0 and "typing" in broken.stderr
    # ...and without the folders inside site-packages it starts with the real one.
    fixed = _typing_in_a_new_interpreter(server_python_path(worker_path))
    assert fixed.returncode == 0, fixed.stderr
    assert Path(fixed.stdout.strip()).parent == Path(sysconfig.get_paths()["stdlib"])
