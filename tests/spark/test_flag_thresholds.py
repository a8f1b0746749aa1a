"""Guardrail flags on every row, per-run flag rates in MLflow, and max_flag_rate failing the
job only after the results are written."""

import pytest
from mlflow import MlflowClient

from jobs.config import IngestConfig
from jobs.describe.report import FlagRateExceeded
from jobs.describe.run import run_describe
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from tests.conftest import describe_config
from tests.fakes import make_chatty_engine

pytestmark = pytest.mark.spark


def test_flag_rates_over_threshold_fail_after_writing(spark, sample_images, tmp_path):
    config = describe_config(
        tmp_path, "fake",
        max_flag_rate={"generic_opener": 0.5, "stated_count": 1.0, "empty_output": 0.0},
    )
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    with pytest.raises(FlagRateExceeded) as raised:
        run_describe(config, spark, make_engine=make_chatty_engine)
    message = str(raised.value)
    assert "generic_opener: 100.0% > 50.0%" in message
    assert "stated_count" not in message and "empty_output" not in message  # within limits
    assert message.count("e.g. ") == 3 and "This image shows three wooden chairs" in message

    rows = read_table(spark, config.results_table).collect()
    assert len(rows) == 8  # written before the job failed
    for row in rows:
        assert {"generic_opener", "stated_count", "scope_drift"} <= set(row.guardrail_flags)

    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    run = client.get_run(rows[0].run_id)
    assert run.data.metrics["flag_rate.generic_opener"] == 1.0
    assert run.data.metrics["flag_rate.scope_drift"] == 1.0
