"""The code passes the project's own ruff configuration (pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ruff_passes():
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "jobs", "udfs", "tests", "benchmarks", "notebooks"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
