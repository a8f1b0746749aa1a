"""``candid plan`` from a real describe run's measured rate (MLflow run id or results table)."""

from __future__ import annotations

import re

import pytest
import yaml
from mlflow import MlflowClient

from jobs.cli import main as candid_main
from jobs.config import IngestConfig
from jobs.describe.run import run_describe
from jobs.tables.ingest import run_ingest
from tests.conftest import describe_config
from tests.fakes import make_fake_engine

pytestmark = pytest.mark.spark


def test_plan_from_a_run_and_from_its_results_table(spark, sample_images, tmp_path, capsys):
    config = describe_config(tmp_path, "fake")
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    summary = run_describe(config, spark, make_engine=make_fake_engine)
    rate = MlflowClient(tracking_uri=config.mlflow.tracking_uri).get_run(
        summary.run_id).data.metrics["images_per_s_per_worker"]
    assert rate > 0
    config_file = tmp_path / "job.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    capsys.readouterr()

    for source, named in ((summary.run_id, f"run {summary.run_id}"),
                          (config.results_table, f"run {summary.run_id} of {config.results_table}")):
        code = candid_main(["plan", "--images", "1000000", "--gpus", "4", "--rate-from", source,
                            "--config", str(config_file)])
        out = capsys.readouterr().out
        assert code == 0, out
        hours = 1_000_000 / (4 * rate) / 3600
        assert f"1000000 images on 4 GPUs at {rate:.2f} images/s per engine (from {named})" in out
        assert f"wall time {hours:.1f} h, {4 * hours:.1f} GPU-hours" in out

    # The plan is an MLflow run of its own; a describe run that names it reports against it.
    plan_id = re.search(r"plan logged to MLflow run ([0-9a-f]{32})", out).group(1)
    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    planned = client.get_run(plan_id).data.metrics
    assert planned["plan.images_per_s_per_engine"] == pytest.approx(rate)
    assert planned["plan.gpus"] == 4 and planned["plan.images"] == 1_000_000
    again = config.model_copy(update={"plan_run": plan_id, "replace": True,
                                      "results_table": str(tmp_path / "results_again")})
    compared = run_describe(again, spark, make_engine=make_fake_engine)
    actual = client.get_run(compared.run_id).data.metrics
    ratio = actual["vs_plan.images_per_s_per_engine"]
    assert ratio == pytest.approx(
        actual["images_per_s_per_engine"] / planned["plan.images_per_s_per_engine"])
    assert compared.vs_plan[0].startswith("images_per_s_per_engine: ")
    assert f"planned in run {plan_id} ({ratio:.0%})" in compared.vs_plan[0]

    code = candid_main(["plan", "--images", "10", "--gpus", "1", "--rate-from", "0" * 32,
                        "--config", str(config_file)])
    assert code == 2 and "not found" in capsys.readouterr().err
