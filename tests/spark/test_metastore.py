"""Input and results given as metastore names (``spark_catalog.default.<table>``), not paths:
ingest creates and MERGEs the input table, describe creates the results and staging tables by
name, stages with ``saveAsTable``, MERGEs, writes descriptions back, and a rerun recovers staged
rows; status and review read them by name. Managed Delta tables in the session's warehouse."""

import uuid
from pathlib import Path

import pytest

from jobs.config import IngestConfig
from jobs.describe.commit import stage_chunk, staging_table_for
from jobs.describe.run import run_describe
from jobs.describe.status import format_status, read_status
from jobs.review.run import run_review
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from tests.cluster_fakes import make_where_engine
from tests.conftest import describe_config

pytestmark = pytest.mark.spark


@pytest.fixture
def names(spark):
    suffix = uuid.uuid4().hex[:8]
    tables = {"input": f"spark_catalog.default.images_{suffix}",
              "results": f"spark_catalog.default.descriptions_{suffix}"}
    yield tables
    for name in (*tables.values(), staging_table_for(tables["results"])):
        spark.sql(f"DROP TABLE IF EXISTS {name}")


def test_catalog_names_work_end_to_end(spark, sample_images, tmp_path, names):
    ingest = IngestConfig(source=str(sample_images.folder), table=names["input"])
    assert run_ingest(ingest, spark).table_rows == 8
    assert run_ingest(ingest, spark).inserted == 0  # the MERGE by name adds nothing twice
    config = describe_config(
        tmp_path, "fake-where", mlflow__enabled=False, chunk_size=4, batch_size=2,
        input_table=names["input"], results_table=names["results"],
        source_column__enabled=True,
    )
    assert config.input_table == names["input"]  # a name is not taken for a relative path

    summary = run_describe(config, spark, make_engine=make_where_engine)

    assert summary.chunks == 2 and summary.tally.ok == 8
    staging = staging_table_for(names["results"])
    assert staging == names["results"] + "__staging"
    for name in (names["input"], names["results"], staging):
        assert spark.catalog.tableExists(name), name
        detail = spark.sql(f"DESCRIBE DETAIL {name}").first()
        assert detail.format == "delta" and "/warehouse/" in detail.location, detail
    assert read_table(spark, staging).count() == 0  # every staged chunk was merged and dropped
    results = read_table(spark, names["results"]).collect()
    assert sorted(r.description for r in results) == sorted(
        f"fake {r.input_width}x{r.input_height}" for r in results)
    written_back = read_table(spark, names["input"]).where("description_v2 IS NOT NULL")
    assert written_back.count() == 8

    # An interrupted run's staged rows, left in the staging table by name...
    leftover = read_table(spark, names["results"]).limit(2).selectExpr(
        "* EXCEPT (run_id, written_at)", "'interrupted' AS run_id")
    stage_chunk(leftover, staging, "interrupted", 0)
    status = read_status(spark, config)
    assert (status.ok, status.pending, status.staged_leftover) == (8, 0, 2)
    assert status.latest_run == summary.run_id  # the rows it committed, not the staged ones
    assert f"latest run {summary.run_id}: " in format_status(status)

    # ...are merged by the next run, which has nothing else to do.
    rerun = run_describe(config, spark, make_engine=make_where_engine)
    assert (rerun.rows_recovered, rerun.rows_processed) == (2, 0)
    assert read_table(spark, staging).count() == 0
    merged = read_table(spark, names["results"])
    assert merged.count() == 8 and merged.where("run_id = 'interrupted'").count() == 2

    page, shown = run_review(spark, config, out=str(tmp_path / "review.html"))
    assert shown == 8 and names["results"] in Path(page).read_text(encoding="utf-8")
