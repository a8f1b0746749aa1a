"""``candid doctor`` through the command line (``jobs.cli.main``, in this process and its local[2]
Spark session, whose executors run the checks) on this CPU machine: the demo config passes
(exit 0, GPU checks marked as not applying), a hub model without a pinned revision is a blocker
(exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.cli import main as candid_main

pytestmark = [pytest.mark.e2e, pytest.mark.spark]
DEMO_CONFIG = str(Path(__file__).resolve().parents[2] / "conf" / "demo.yaml")


def _doctor(capsys, model: str) -> tuple[int, str]:
    capsys.readouterr()
    code = candid_main(["doctor", "--config", DEMO_CONFIG, "--set", f"engine.model={model}"])
    return code, capsys.readouterr().out


def _findings(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines()
            if line.startswith(("[ok] ", "[n/a] ", "[warning] ", "[BLOCKER] "))]


def test_doctor_passes_the_demo_config_and_says_which_gpu_checks_did_not_apply(
    spark, tiny_model_dir, capsys,
):
    code, stdout = _doctor(capsys, str(tiny_model_dir))
    assert code == 0, stdout[-2000:]
    lines = _findings(stdout)
    checks = [line.split("]")[1].split(":")[0].strip() for line in lines]
    assert checks == ["versions", "cuda", "model", "caches", "mlflow"], lines
    assert lines[0].startswith("[ok] versions: python 3.11")
    assert "on the driver and 2 executor task(s)" in lines[0]  # local[2]: two task slots
    assert lines[1] == ("[n/a] cuda: no GPU on any executor (no nvidia-smi): CUDA, driver "
                        "version, GPU memory and compiler checks do not apply")
    assert lines[2].startswith(f"[ok] model: {tiny_model_dir} revision local-")
    assert "0 blocker(s) in 5 finding(s) from the driver and 2 executor task(s)" in stdout


def test_doctor_refuses_a_hub_model_without_a_pinned_revision(spark, capsys):
    code, stdout = _doctor(capsys, "Qwen/Qwen2-VL-7B-Instruct")
    assert code == 2, stdout[-2000:]
    blockers = [line for line in _findings(stdout) if line.startswith("[BLOCKER]")]
    assert blockers == [
        "[BLOCKER] model: hub model Qwen/Qwen2-VL-7B-Instruct has no engine.revision: each "
        "executor would download whatever is newest; pin a commit"
    ]
    assert "1 blocker(s) in 5 finding(s)" in stdout
