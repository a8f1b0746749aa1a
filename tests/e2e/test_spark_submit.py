"""`spark-submit jobs/cli.py describe` works with the options `candid submit-args` prints, with
the real engine (vLLM CPU, tiny model), on a local master: the workers run this interpreter.
The archive mode (a packed environment on a standalone cluster) is tests/e2e/test_cluster.py."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.command_logs import failure_report
from tests.conftest import describe_config
from tests.resilience_fakes import candid_env

pytestmark = [pytest.mark.e2e, pytest.mark.spark]
REPO = Path(__file__).resolve().parents[2]


def test_spark_submit_runs_the_describe_entry_point(spark, sample_images, tiny_model_dir, tmp_path):
    from jobs.config import IngestConfig
    from jobs.tables.delta_io import read_table
    from jobs.tables.ingest import run_ingest

    config = describe_config(tmp_path, tiny_model_dir, mlflow__enabled=False)
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env = candid_env()
    args = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "submit-args", "--config", str(path)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert "--packages" in args and "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in args
    # A local master's workers run on this machine: this interpreter, nothing to ship.
    assert f"spark.pyspark.python={sys.executable}" in args and "--archives" not in args
    submit = Path(sys.executable).with_name("spark-submit")
    done = subprocess.run(
        [str(submit), *args, str(REPO / "jobs" / "cli.py"), "describe", "--config", str(path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, failure_report(done.stdout, done.stderr)
    assert "statuses: ok=8" in done.stdout
    assert read_table(spark, config.results_table).count() == 8
