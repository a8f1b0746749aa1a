"""benchmarks/gpu_smoke.py must exit cleanly where there is no GPU, and must not need Spark,
Delta, MLflow or vLLM to plan its run (GPU machines for the check may have none of them)."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_smoke.py"
# Imports made impossible (sys.modules[name] = None), as on a machine without these packages.
BLOCK = (
    "import sys\nfor name in ('vllm', 'pyspark', 'delta', 'mlflow'):\n"
    "    sys.modules[name] = None\n"
)


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)


def test_without_cuda_it_says_so_and_exits_0():
    done = _run(BLOCK + f"sys.argv = ['gpu_smoke.py']\nimport runpy\n"
                        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CUDA is not available" in done.stdout
    assert "nothing to measure on this machine" in done.stdout


def test_its_run_needs_no_spark_delta_mlflow_or_vllm():
    done = _run(BLOCK + f"sys.argv = ['gpu_smoke.py', '--plan']\nimport runpy\n"
                        f"try:\n    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
                        "except SystemExit as end:\n    print('exit', end.code)\n"
                        "print('loaded', sorted(m for m in sys.modules if sys.modules[m] is not"
                        " None and m.split('.')[0] in ('vllm', 'pyspark', 'delta', 'mlflow')))")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gpu_smoke plan: engines ['transformers']" in done.stdout
    assert "exit 0" in done.stdout and "loaded []" in done.stdout
