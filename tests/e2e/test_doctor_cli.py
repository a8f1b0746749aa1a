"""``candid doctor`` end to end on this CPU machine: the demo config passes (exit 0, GPU checks
marked as not applying), a hub model without a pinned revision is a blocker (exit 2)."""

from __future__ import annotations

import pytest

from tests.resilience_fakes import run_candid

pytestmark = [pytest.mark.e2e]


def _findings(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines()
            if line.startswith(("[ok] ", "[n/a] ", "[warning] ", "[BLOCKER] "))]


def test_doctor_passes_the_demo_config_and_says_which_gpu_checks_did_not_apply(tiny_model_dir):
    done = run_candid(["doctor", "--config", "conf/demo.yaml",
                       "--set", f"engine.model={tiny_model_dir}"], timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = _findings(done.stdout)
    checks = [line.split("]")[1].split(":")[0].strip() for line in lines]
    assert checks == ["versions", "cuda", "model", "caches", "mlflow"], lines
    assert lines[0].startswith("[ok] versions: python 3.11")
    assert "on the driver and 2 executor task(s)" in lines[0]  # local[2]: two task slots
    assert lines[1] == ("[n/a] cuda: no GPU on any executor (no nvidia-smi): CUDA, driver "
                        "version, GPU memory and compiler checks do not apply")
    assert lines[2].startswith(f"[ok] model: {tiny_model_dir} revision local-")
    assert "0 blocker(s) in 5 finding(s) from the driver and 2 executor task(s)" in done.stdout


def test_doctor_refuses_a_hub_model_without_a_pinned_revision():
    done = run_candid(["doctor", "--config", "conf/demo.yaml",
                       "--set", "engine.model=Qwen/Qwen2-VL-7B-Instruct"], timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    blockers = [line for line in _findings(done.stdout) if line.startswith("[BLOCKER]")]
    assert blockers == [
        "[BLOCKER] model: hub model Qwen/Qwen2-VL-7B-Instruct has no engine.revision: each "
        "executor would download whatever is newest; pin a commit"
    ]
    assert "1 blocker(s) in 5 finding(s)" in done.stdout
