"""`candid compare` and `candid review` on real Spark + Delta + vLLM (tiny model) + MLflow,
with the review page loaded in headless Chromium."""

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from jobs.config import IngestConfig
from jobs.evaluation.compare import run_compare
from jobs.review.run import run_review
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from tests.conftest import ONE_ENGINE, describe_config
from tests.e2e.test_review_page_browser import run_chromium
from tests.html_dom import Dom

pytestmark = [pytest.mark.spark, pytest.mark.engine, pytest.mark.e2e]


@pytest.fixture(scope="module")
def compared(spark, sample_images, tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    config = describe_config(tmp, tiny_model_dir, mlflow__sample_rows=2, **ONE_ENGINE)
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    summary = run_compare(config, ["v1", "v2", "v3"], 5, str(tmp / "out"), spark)
    return config, summary, tmp


def test_side_by_side_table_has_every_prompt_for_every_sampled_image(spark, compared):
    _, summary, tmp = compared
    sample = read_table(spark, str(tmp / "out" / "sample")).collect()
    assert 5 <= len(sample) <= 8  # proportional, at least one per stratum
    table = read_table(spark, str(tmp / "out" / "side_by_side"))
    rows = table.collect()
    assert len(rows) == len(sample) == summary.sample_rows
    for row in rows:
        for version in ("v1", "v2", "v3"):
            assert row[f"status_{version}"] == "ok", (version, row)
            assert row[f"description_{version}"] is not None
    results = read_table(spark, str(tmp / "out" / "results"))
    assert results.where("prompt_version = 'v3'").where("structured.confidence IS NOT NULL").count() > 0


def test_compare_run_logs_per_prompt_flag_rates_and_the_page(compared):
    config, summary, _ = compared
    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    run = client.get_run(summary.run_id)
    metrics = run.data.metrics
    assert {"v1.ok_rate", "v2.ok_rate", "v3.ok_rate"} <= set(metrics)
    assert all(metrics[f"{v}.ok_rate"] == 1.0 for v in ("v1", "v2", "v3"))
    assert any(k.startswith("v2.flag_rate.") for k in metrics)  # random weights trip guardrails
    artifacts = {a.path for a in client.list_artifacts(summary.run_id, "review")}
    assert "review/review.html" in artifacts
    per_prompt = client.download_artifacts(summary.run_id, "comparison/per_prompt.json")
    assert json.loads(Path(per_prompt).read_text())


def test_review_page_renders_offline_in_chromium(compared, tmp_path):
    _, summary, _ = compared
    html = Path(summary.html_path).read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    done = run_chromium(Path(summary.html_path), tmp_path / "profile", "--dump-dom")
    dom = Dom()
    dom.feed(done.stdout)
    assert dom.count("tr", "image-row") == summary.sample_rows
    assert dom.count("img", "thumb") == summary.sample_rows
    assert dom.count("tr", "prompt-summary") == 3


def test_review_of_one_describe_run_is_logged_to_that_run(spark, compared, tmp_path):
    config, summary, tmp = compared
    v2_run = summary.per_prompt["describe/v2"].run_id
    review_config = config.model_copy(update={"results_table": str(tmp / "out" / "results")})
    path, shown = run_review(spark, review_config, run_id=v2_run, out=str(tmp_path / "r.html"))
    assert shown == summary.sample_rows
    page = Path(path).read_text(encoding="utf-8")
    assert "describe/v2" in page and "describe/v1" not in page
    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    assert "review/r.html" in {a.path for a in client.list_artifacts(v2_run, "review")}
    with pytest.raises(ValueError, match="no result rows for run nope"):
        run_review(spark, review_config, run_id="nope")


def test_rerun_reuses_the_sample_results_and_reports_the_same_figures(spark, compared):
    config, first, tmp = compared
    again = run_compare(config, ["v1", "v2", "v3"], 5, str(tmp / "out"), spark)
    def strip(figures):  # what a rerun must report the same: all but the new describe run id
        return (figures.prompt_hash, figures.fingerprint, figures.tally, figures.fingerprints)

    assert {k: strip(v) for k, v in again.per_prompt.items()} == {
        k: strip(v) for k, v in first.per_prompt.items()
    }
    assert all(v.tally.rows == first.sample_rows for v in again.per_prompt.values())
    assert read_table(spark, str(tmp / "out" / "results")).count() == 3 * first.sample_rows
