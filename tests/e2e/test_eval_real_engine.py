"""``candid eval make-dataset`` -> ``candid describe`` (v1 and v2) -> ``candid eval score`` ->
``candid audit`` with the real vLLM CPU engine on the tiny random-weight model, through the
command line (in this process, on the session's Spark). Its answers are noise: this proves that
every step runs on real engine output and logs its rates with intervals, not what they are.
Kept small (the suite's time limit): six scenes, the describe prompts capped at a few tokens."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from jobs.cli import main as candid_main
from jobs.tables.delta_io import read_table
from tests.conftest import ONE_ENGINE, PROMPT_DIR, describe_config

pytestmark = [pytest.mark.e2e, pytest.mark.spark, pytest.mark.engine]
N, AUDITED, MAX_TOKENS = 6, 3, 12


def _short_prompts(folder: Path) -> Path:
    """describe v1 and v2 as shipped but for ``max_tokens``: random weights never stop early."""
    folder.mkdir()
    for version in ("v1", "v2"):
        spec = yaml.safe_load((PROMPT_DIR / f"describe_{version}.yaml").read_text())
        spec["sampling"]["max_tokens"] = MAX_TOKENS
        (folder / f"describe_{version}.yaml").write_text(yaml.safe_dump(spec))
    return folder


def _run(argv: list[str], capsys) -> list[str]:
    code = candid_main(argv)
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    return out.out.splitlines()


def _run_id(lines: list[str]) -> str:
    return next(line for line in lines if line.startswith("MLflow run: ")).split()[2]


@pytest.mark.timeout(600)
def test_dataset_describe_score_and_audit_with_vllm(spark, tiny_model_dir, tmp_path, capsys):
    scenes = str(tmp_path / "scenes")
    config = describe_config(tmp_path, tiny_model_dir, input_table=scenes, mlflow__sample_rows=2,
                             prompt__dir=str(_short_prompts(tmp_path / "prompts")), **ONE_ENGINE)
    config_file = tmp_path / "job.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    common = ["--config", str(config_file)]
    _run(["eval", "make-dataset", "--n", str(N), "--seed", "1", "--out", scenes, *common], capsys)
    for version in ("v1", "v2"):
        _run(["describe", *common, "--set", f"prompt.version={version}"], capsys)
    results = read_table(spark, config.results_table)
    assert results.count() == 2 * N

    lines = _run(["eval", "score", "--results", config.results_table, "--truth", scenes,
                  "--page", str(tmp_path / "eval.html"), *common], capsys)
    ok = results.where("status = 'ok'").count()
    assert any(line.startswith(f"scored {ok} ok result rows of {config.results_table}")
               for line in lines), lines
    assert any(re.match(r"  v2 vs v1: hallucination_per_description \d\.\d\d -> \d\.\d\d, diff "
                        r"[+-]\d\.\d\d \(95% CI [+-]\d\.\d\d\.\.[+-]\d\.\d\d\), McNemar exact p[=<]", line)
               for line in lines), lines
    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    metrics = client.get_run(_run_id(lines)).data.metrics
    for version in ("v1", "v2"):
        rate = metrics[f"{version}.hallucination_per_description"]
        assert (metrics[f"{version}.hallucination_per_description.ci_low"] <= rate
                <= metrics[f"{version}.hallucination_per_description.ci_high"])
        assert metrics[f"{version}.n_images"] == N
    assert "v2_vs_v1.count_wrong.mcnemar_p" in metrics
    assert (tmp_path / "eval.html").stat().st_size > 0

    lines = _run(["audit", *common, "--sample", str(AUDITED)], capsys)
    audit = read_table(spark, config.results_table + "_audit").collect()
    assert len(audit) == AUDITED and {r.probe_prompt_version for r in audit} == {"v1"}
    assert all(r.status == "ok" and r.n_controls == 2 for r in audit)  # controls from the truth
    metrics = client.get_run(_run_id(lines)).data.metrics
    assert metrics["controls"] == 2 * AUDITED and "control_yes_per_control.ci_high" in metrics
