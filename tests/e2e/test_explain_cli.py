"""``candid describe --explain`` through the real CLI in a subprocess: the effective configuration
as YAML on stdout, exit 0, and no Spark. The subprocess gets a JAVA_HOME with no Java in it: had
the command started a SparkSession, PySpark's gateway would have failed
(``JAVA_GATEWAY_EXITED``) and the command with it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_explain_prints_the_effective_configuration_without_starting_spark(tmp_path):
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java-here"), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "describe", "--config", "conf/demo.yaml",
         "--set", "prompt.version=v3", "--set", "sampling.temperature=0.2",
         "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "--explain"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    shown = yaml.safe_load(done.stdout)  # nothing but YAML on stdout (no log line)
    assert shown["prompt"]["name"] == "describe" and shown["prompt"]["version"] == "v3"
    assert re.fullmatch(r"[0-9a-f]{16}", shown["prompt"]["hash"])
    # The prompt's max_tokens survives a temperature override.
    assert shown["sampling"]["temperature"] == 0.2 and shown["sampling"]["max_tokens"] == 320
    assert shown["sampling_set_by_config"] == ["temperature"]
    assert shown["engine"]["backend"] == "vllm" and shown["engine"]["vllm"]["max_num_seqs"] == 16
    assert shown["images"]["max_pixels"] == 200704 and shown["feeding"]["batch_size"] == 8
    assert re.fullmatch(r"[0-9a-f]{16}", shown["fingerprint"]["value"])
    inputs = shown["fingerprint"]["inputs"]
    assert inputs["sampling"]["max_tokens"] == 320 and inputs["prompt"]["output"]["mode"] == "json"
    assert "Spark" not in done.stderr and "JAVA_GATEWAY" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing was tracked either
