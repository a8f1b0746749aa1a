"""The notebooks run top to bottom as plain Python files, with the real engine (vLLM on the tiny
model): once with a Databricks-like ``dbutils`` and once with none, where the widget shim of
``jobs.notebook`` answers. Both run on the test session, as a Databricks notebook runs on the
cluster's ``spark``."""

import runpy
from pathlib import Path

import pytest
import yaml

from jobs.config import ConfigError, IngestConfig
from jobs.notebook import DESCRIBE_WIDGETS, WidgetShim, config_from_widgets, read_widgets
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from tests.conftest import ONE_ENGINE, describe_config

pytestmark = [pytest.mark.spark, pytest.mark.engine]  # the real engine, in the session
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


class Widgets:
    """dbutils.widgets as Databricks has it: values set in the UI, defaults otherwise."""

    def __init__(self, values):
        self.values = dict(values)
        self.declared = []

    def text(self, name, defaultValue, label=None):  # noqa: N803 - Databricks' own name
        self.declared.append(name)
        self.values.setdefault(name, defaultValue)

    def get(self, name):
        return self.values[name]


class DbUtils:
    def __init__(self, values):
        self.widgets = Widgets(values)


def _job_yaml(tmp_path, tiny_model_dir, spark, sample_images):
    """A config file whose tables are decoys: the widgets must point the job elsewhere."""
    config = describe_config(tmp_path, tiny_model_dir, mlflow__enabled=False, **ONE_ENGINE)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**config.model_dump(mode="json"),
                                    "input_table": str(tmp_path / "not-this-input"),
                                    "results_table": str(tmp_path / "not-these-results")}))
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    return path, config


def test_describe_notebook_runs_from_databricks_widgets(spark, sample_images, tiny_model_dir, tmp_path):
    path, config = _job_yaml(tmp_path, tiny_model_dir, spark, sample_images)
    dbutils = DbUtils({
        "config": str(path), "input_table": config.input_table,
        "results_table": config.results_table, "prompt_version": "v1",
        "overrides": "batch_size=2\nchunk_size=3",
    })
    runpy.run_path(str(NOTEBOOKS / "describe_images.py"), {"spark": spark, "dbutils": dbutils})
    assert dbutils.widgets.declared == [w.name for w in DESCRIBE_WIDGETS]
    rows = read_table(spark, config.results_table).collect()
    assert len(rows) == 8 and {r.prompt_version for r in rows} == {"v1"}
    assert all(r.status == "ok" for r in rows)
    assert {r.model for r in rows} == {"test/tiny-qwen2-vl"}  # the real engine's model


def test_compare_notebook_runs_as_a_plain_file_with_the_widget_shim(spark, sample_images, tiny_model_dir, tmp_path):
    path, config = _job_yaml(tmp_path, tiny_model_dir, spark, sample_images)
    out = tmp_path / "compare"
    namespace = runpy.run_path(str(NOTEBOOKS / "compare_prompts.py"), {
        "spark": spark,
        "widget_values": {"config": str(path), "input_table": config.input_table,
                          "prompts": "v1,v2", "sample": "3", "out": str(out),
                          "overrides": "batch_size=2"},
    })
    summary = namespace["summary"]
    assert summary.versions == ["v1", "v2"] and summary.sample_rows == 3
    side = read_table(spark, str(out / "side_by_side")).collect()
    assert len(side) == 3
    assert all(r.status_v1 == "ok" and r.status_v2 == "ok" for r in side)
    assert Path(summary.html_path).is_file()


def test_the_shim_takes_given_values_then_the_environment_then_defaults(monkeypatch):
    monkeypatch.setenv("CANDID_WIDGET_RESULTS_TABLE", "spark_catalog.default.from_env")
    monkeypatch.setenv("CANDID_WIDGET_INPUT_TABLE", "ignored: a given value wins")
    values = read_widgets({"widget_values": {"input_table": "spark_catalog.default.images"}},
                          DESCRIBE_WIDGETS)
    assert values["input_table"] == "spark_catalog.default.images"
    assert values["results_table"] == "spark_catalog.default.from_env"
    assert values["config"] == "conf/cluster-example.yaml"  # the default
    config = config_from_widgets({**values, "prompt_version": "v3"})
    assert (config.input_table, config.results_table, config.prompt.version) == (
        "spark_catalog.default.images", "spark_catalog.default.from_env", "v3")
    with pytest.raises(ConfigError, match="never declared"):
        WidgetShim().get("config")
