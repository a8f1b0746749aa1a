"""A resumed run with other chunk and batch sizes, and a prompt in non-ASCII text from its file to
the results table, MLflow and the review page; real Spark + Delta + MLflow, fake engines (the
engine is not the subject here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from jobs.config import IngestConfig
from jobs.demo.run import make_sample_images
from jobs.describe.run import run_describe
from jobs.review.run import run_review
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from jobs.tracking.prompt_store import load_registered_prompt
from tests.conftest import PROMPT_DIR, describe_config
from tests.fakes import make_echo_prompt_engine, make_fake_engine

pytestmark = pytest.mark.spark


def test_a_resume_with_other_chunk_and_batch_sizes_keeps_the_fingerprint(spark, tmp_path):
    folder = tmp_path / "img"
    make_sample_images(folder, count=4, seed=41)
    first_config = describe_config(tmp_path, "fake", chunk_size=2, batch_size=2,
                                   mlflow__enabled=False)
    run_ingest(IngestConfig(source=str(folder), table=first_config.input_table), spark)
    first = run_describe(first_config, spark, make_engine=make_fake_engine)
    assert (first.rows_processed, first.chunks) == (4, 2)
    done = {r.image_id: r.written_at for r in read_table(spark, first_config.results_table).collect()}

    make_sample_images(folder / "later", count=3, seed=42)  # more images since the first run
    run_ingest(IngestConfig(source=str(folder), table=first_config.input_table), spark)
    # How the work is cut (and so how much a crash costs) may change between runs.
    resumed_config = describe_config(tmp_path, "fake", chunk_size=5, batch_size=3,
                                     mlflow__enabled=False)
    resumed = run_describe(resumed_config, spark, make_engine=make_fake_engine)

    assert resumed.fingerprint == first.fingerprint
    assert (resumed.rows_pending, resumed.rows_processed, resumed.rows_replaced) == (3, 3, 0)
    rows = {r.image_id: r for r in read_table(spark, first_config.results_table).collect()}
    assert len(rows) == 7 and {r.status for r in rows.values()} == {"ok"}
    # The first run's rows were not described again: same run, same commit time.
    assert {i: (rows[i].run_id, rows[i].written_at) for i in done} == {
        i: (first.run_id, at) for i, at in done.items()}
    assert {r.run_id for i, r in rows.items() if i not in done} == {resumed.run_id}
    assert {r.run_fingerprint for r in rows.values()} == {first.fingerprint}


# Accents, a typographic apostrophe, a dash, CJK, a combining mark, a symbol and an emoji
# outside the BMP; no character HTML escapes, so the page must hold it exactly as written.
PROMPT_LINE = "D\u00e9cris l\u2019objet \u2014 \u732b, \u00dcn\u00efc\u00f6de\u0301 \u2713 \U0001f600 en une phrase."


def _prompt_folder(folder: Path) -> Path:
    """describe_v2 as v7, its first instruction line replaced by ``PROMPT_LINE``."""
    spec = yaml.safe_load((PROMPT_DIR / "describe_v2.yaml").read_text(encoding="utf-8"))
    spec["version"] = "v7"
    spec["instructions"] = PROMPT_LINE + "\n" + spec["instructions"].split("\n", 1)[1]
    folder.mkdir()
    (folder / "describe_v7.yaml").write_text(
        yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


def test_a_non_ascii_prompt_reaches_results_mlflow_and_the_review_page(
    spark, sample_images, tmp_path
):
    config = describe_config(tmp_path, "fake", prompt={
        "version": "v7", "dir": str(_prompt_folder(tmp_path / "prompts"))})
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    summary = run_describe(config, spark, make_engine=make_echo_prompt_engine)

    rows = read_table(spark, config.results_table).collect()
    assert len(rows) == 8 and {r.status for r in rows} == {"ok"}
    expected = {r.image_id: f"{PROMPT_LINE} ({r.input_width}x{r.input_height})" for r in rows}
    assert {r.image_id: r.description for r in rows} == expected

    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    logged = Path(client.download_artifacts(summary.run_id, "prompt", str(tmp_path / "dl")))
    user_text = (logged / "describe_v7_user.txt").read_text(encoding="utf-8")
    assert user_text.splitlines()[0] == PROMPT_LINE
    spec_file = (logged / "describe_v7.yaml").read_text(encoding="utf-8")
    assert PROMPT_LINE in spec_file  # readable as written, not \\u escapes
    assert yaml.safe_load(spec_file)["instructions"].splitlines()[0] == PROMPT_LINE
    registered = load_registered_prompt(summary.registered_prompt, config.mlflow.tracking_uri)
    assert registered.instructions.splitlines()[0] == PROMPT_LINE
    samples = Path(client.download_artifacts(summary.run_id, "samples/outputs.json",
                                             str(tmp_path / "dl2")))
    table = json.loads(samples.read_text(encoding="utf-8"))
    column = table["columns"].index("description")
    assert {row[column] for row in table["data"]} <= set(expected.values())

    page, shown = run_review(spark, config, run_id=summary.run_id, out=str(tmp_path / "r.html"))
    html = Path(page).read_text(encoding="utf-8")
    assert shown == 8 and '<meta charset="utf-8">' in html.lower()
    assert all(description in html for description in expected.values())
