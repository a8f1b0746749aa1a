"""The notebooks run as Databricks would run them: widgets in, job out, no logic of their own."""

import runpy
from pathlib import Path

import pytest
import yaml

from jobs.config import IngestConfig
from jobs.delta_io import read_table
from jobs.ingest import run_ingest
from tests.conftest import describe_config

pytestmark = pytest.mark.spark
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


class Widgets:
    def __init__(self, values):
        self.values = dict(values)

    def text(self, name, default, label=None):
        self.values.setdefault(name, default)

    def get(self, name):
        return self.values[name]


class DbUtils:
    def __init__(self, values):
        self.widgets = Widgets(values)


def test_describe_notebook_runs_the_job_from_widgets(spark, sample_images, tiny_model_dir, tmp_path):
    config = describe_config(tmp_path, tiny_model_dir, mlflow__enabled=False)
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    widgets = {"config": str(path), "overrides": "batch_size=2\nchunk_size=3", "prompt_version": "v1"}
    runpy.run_path(str(NOTEBOOKS / "describe_images.py"), {"spark": spark, "dbutils": DbUtils(widgets)})
    rows = read_table(spark, config.results_table).collect()
    assert len(rows) == 8 and {r.prompt_version for r in rows} == {"v1"}
    assert all(r.status == "ok" for r in rows)
