"""The README's demo command, end to end in a subprocess: real Spark, Delta, vLLM, MLflow. Its
second run, which must find nothing left to do, runs in this test's own Spark session: a second
driver JVM and interpreter cost about 25 s of CPU and would prove nothing the first did not."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.cli import main as candid_main
from tests.command_logs import failure_report
from tests.resilience_fakes import candid_env

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
CANDID = [sys.executable, "-m", "jobs.cli"]


def _run(args, tmp_path, timeout=600):
    return subprocess.run(
        [*CANDID, *args], cwd=REPO, env=candid_env(), capture_output=True, text=True, timeout=timeout
    )


def _demo_args(tmp_path, tiny_model_dir):
    return [
        "demo", "--workdir", str(tmp_path / "demo"), "--images", "6",
        "--model-dir", str(tiny_model_dir),
        "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "--set", f"mlflow.artifact_location={tmp_path / 'mlartifacts'}",
    ]


def test_demo_twice_then_a_malformed_config(spark, tmp_path, tiny_model_dir, capsys):
    first = _run(_demo_args(tmp_path, tiny_model_dir), tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    # A console a person can read: the log's path first, a few lines per phase, the summary
    # last; Spark's and Ivy's output went to the log file, not to the terminal.
    lines = first.stdout.splitlines()
    assert lines[0].startswith("log: build/logs/") and lines[0].endswith("-demo/candid.log")
    assert len(lines) <= 40 and first.stderr == ""
    assert lines[-1].startswith("  browse: mlflow ui")
    log_text = (REPO / lines[0].removeprefix("log: ")).read_text()
    assert "Ivy Default Cache set to" in log_text and "[describe] describe/v2" in log_text
    assert "Ivy Default Cache" not in first.stdout + first.stderr
    assert f"results table: {tmp_path / 'demo' / 'tables' / 'descriptions'}" in first.stdout
    assert "statuses: ok=6" in first.stdout
    run_id = re.search(r"MLflow run: (\w+)", first.stdout).group(1)

    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id)
    assert run.data.metrics["rows_ok"] == 6

    capsys.readouterr()
    code = candid_main(_demo_args(tmp_path, tiny_model_dir))
    second, second_err = capsys.readouterr()
    assert code == 0, failure_report(second, second_err)
    assert "processed now 0" in second
    assert "rows in the results table for this prompt and model: 6 (ok=6)" in second

    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "conf" / "demo.yaml").read_text().replace("batch_size: 8", "batch_size: lots"))
    failed = _run(["describe", "--config", str(bad)], tmp_path, timeout=120)
    assert failed.returncode == 2
    assert "batch_size: Input should be a valid integer" in failed.stderr
