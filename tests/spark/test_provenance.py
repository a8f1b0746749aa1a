"""A result says exactly what produced it: each row's run fingerprint, a run that would mix
fingerprints in one prompt version refused with a clear message, ``replace`` describing those
rows again (Delta keeps the old ones), and the MERGE key keeping models and prompt names apart.

Fingerprints below are written out: they are a stored contract (every existing results table
holds them), so a change to what they cover must show up here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jobs.config import DescribeConfig, IngestConfig, load_config
from jobs.describe.run import run_describe
from jobs.describe.start import FingerprintMismatch
from jobs.tables.delta_io import latest_version, read_table
from jobs.tables.ingest import run_ingest
from tests.conftest import PROMPT_DIR, describe_config
from tests.fakes import make_fake_engine

pytestmark = pytest.mark.spark
# describe_config's settings (model id test/tiny-qwen2-vl, a fake engine's free model string,
# float32, vLLM with max_model_len 2048, max_pixels 200704) with conf/prompts/describe_v2.yaml as
# shipped, under fingerprint layout 2 (layout 1 gave 654df888ba6773d9, 0f50366ea4eafb7f and
# 3e12d94cf381ac35: docs/operations.md, "Fingerprint layouts")...
V2 = "3c8c944aa33c7ae8"
# ... with its instructions edited to "in exactly five words",
V2_EDITED = "2874cacc11fd8f61"
# ... and with sampling overridden to max_tokens 12.
V2_SHORT = "9a4738d5b3d652c8"


def _prompt_folder(tmp: Path) -> Path:
    folder = tmp / "prompts"
    folder.mkdir()
    shutil.copy(PROMPT_DIR / "describe_v2.yaml", folder / "describe_v2.yaml")
    return folder


def _fingerprints(spark, table: str, version: int | None = None) -> dict[str, int]:
    rows = read_table(spark, table, version).groupBy("run_fingerprint").count().collect()
    return {r["run_fingerprint"]: r["count"] for r in rows}


@pytest.fixture
def described(spark, sample_images, tmp_path):
    """Eight images described once under describe/v2 with a fake engine."""
    folder = _prompt_folder(tmp_path)
    config = describe_config(tmp_path, "fake", prompt__dir=str(folder), mlflow__enabled=False)
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    first = run_describe(config, spark, make_engine=make_fake_engine)
    assert first.fingerprint == V2 and first.rows_processed == 8
    return config, folder, first


def test_an_edited_prompt_is_refused_then_replaced_with_history_kept(spark, described):
    config, folder, first = described
    prompt_file = folder / "describe_v2.yaml"
    prompt_file.write_text(prompt_file.read_text().replace(
        "in one to three plain sentences", "in exactly five words"
    ))
    before = latest_version(spark, config.results_table)
    with pytest.raises(FingerprintMismatch) as refused:
        run_describe(config, spark, make_engine=make_fake_engine)
    message = str(refused.value)
    assert f"({V2}: 8 rows)" in message and f"this run's fingerprint is {V2_EDITED}" in message
    assert "new version" in message and "--replace" in message
    assert latest_version(spark, config.results_table) == before  # nothing was written
    assert _fingerprints(spark, config.results_table) == {V2: 8}

    replaced = run_describe(
        config.model_copy(update={"replace": True}), spark, make_engine=make_fake_engine
    )
    assert replaced.fingerprint == V2_EDITED
    assert (replaced.rows_replaced, replaced.rows_processed) == (8, 8)
    assert _fingerprints(spark, config.results_table) == {V2_EDITED: 8}
    # The old rows are one time-travel away, at the version the run reports.
    assert replaced.results_version_before == before
    assert _fingerprints(spark, config.results_table, before) == {V2: 8}
    # Consistent again: a plain rerun is accepted and describes nothing.
    again = run_describe(config, spark, make_engine=make_fake_engine)
    assert (again.rows_processed, again.rows_replaced) == (0, 0)


def test_a_sampling_override_is_refused(spark, described):
    config, _, _ = described
    shorter = load_config(DescribeConfig, config.model_dump(), sampling__max_tokens=12)
    with pytest.raises(FingerprintMismatch, match=f"this run's fingerprint is {V2_SHORT}"):
        run_describe(shorter, spark, make_engine=make_fake_engine)


def test_the_merge_key_keeps_models_and_prompt_names_apart(spark, sample_images, tmp_path):
    folder = _prompt_folder(tmp_path)
    caption = (folder / "describe_v2.yaml").read_text().replace("name: describe", "name: caption")
    (folder / "caption_v2.yaml").write_text(caption)
    config = describe_config(tmp_path, "fake", prompt__dir=str(folder), mlflow__enabled=False)
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    runs = [("describe", "model-a"), ("describe", "model-b"), ("caption", "model-a")]

    def variant(name: str, model_id: str):
        return config.model_copy(update={
            "prompt": config.prompt.model_copy(update={"name": name}),
            "engine": config.engine.model_copy(update={"model_id": model_id}),
        })

    for name, model_id in runs:
        assert run_describe(variant(name, model_id), spark, make_engine=make_fake_engine).rows_processed == 8
    ids = [r.image_id for r in read_table(spark, config.input_table).select("image_id").collect()]
    rows = read_table(spark, config.results_table).collect()
    keys = {(r.image_id, r.prompt_name, r.prompt_version, r.model) for r in rows}
    expected = {
        (image_id, name, "v2", model_id) for image_id in ids for name, model_id in runs
    }
    assert len(rows) == 24 and keys == expected
    # Rerunning one of them touches only its own rows.
    again = run_describe(variant("describe", "model-b"), spark, make_engine=make_fake_engine)
    assert again.rows_processed == 0 and read_table(spark, config.results_table).count() == 24
