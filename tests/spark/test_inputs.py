"""A user's own Delta table as input (its column names, a filter, a column carried into the
results), described without ``candid ingest``; ids derived in Spark SQL equal the Python ones."""

from __future__ import annotations

import pytest

from jobs.config import ConfigError
from jobs.describe.run import run_describe
from jobs.tables.delta_io import latest_version, read_table
from jobs.tables.inputs import image_id_column, image_id_for, read_inputs
from tests.conftest import describe_config
from tests.fakes import make_fake_engine

pytestmark = pytest.mark.spark

TRICKY_PATHS = [
    "/data/a b#1.jpg", "/data/caf\u00e9/\u732b.png", "s3://bucket/x'y\".webp", "", " ",
    "file:///tmp/\U0001f600.gif", "gs://b/" + "long/" * 60 + "z.jpg", "C:\\images\\win.bmp",
]


def test_spark_and_python_derive_the_same_ids(spark):
    from pyspark.sql import functions as F

    frame = spark.createDataFrame([(p,) for p in TRICKY_PATHS], "path STRING")
    derived = {r.path: r.image_id for r in frame.select(
        "path", image_id_column(F.col("path")).alias("image_id")).collect()}
    assert derived == {p: image_id_for(p) for p in TRICKY_PATHS}
    # Written out: ids are stored in every input and results table, so they must never move.
    assert derived["/data/a b#1.jpg"] == "ae6121133bcf3087fa423cba"
    assert derived["/data/caf\u00e9/\u732b.png"] == "85bfb35b080024bef9a89bb8"


def _catalogue(spark, table: str, sample_images) -> dict[int, str]:
    """A product catalogue owned by someone else: BIGINT ids, its own column names, two
    categories, a row without an image; returns {sku: path} of the shoes."""
    paths = [str(p.resolve()) for p in sample_images.paths]
    rows = [(1000 + i, path, "shoes" if i % 2 == 0 else "hats", f"owner-{i}")
            for i, path in enumerate(paths)]
    rows.append((2000, None, "shoes", "no image yet"))
    spark.createDataFrame(rows, "sku BIGINT, image_uri STRING, category STRING, note STRING") \
        .write.format("delta").save(table)
    return {sku: path for sku, path, category, _ in rows if category == "shoes" and path}


def test_a_users_table_with_its_own_columns_and_a_filter_is_described(
    spark, sample_images, tmp_path
):
    table = str(tmp_path / "catalogue")
    shoes = _catalogue(spark, table, sample_images)
    config = describe_config(
        tmp_path, "fake", input_table=table, mlflow__enabled=False,
        input={"id_column": "sku", "path_column": "image_uri", "filter": "category = 'shoes'",
               "extra_columns": ["category"]},
        source_column__enabled=True, chunk_size=2,
    )
    summary = run_describe(config, spark, make_engine=make_fake_engine)
    assert (summary.rows_in, summary.rows_processed) == (4, 4)  # the row without a path skipped
    results = read_table(spark, config.results_table).collect()
    assert {(r.image_id, r.path, r.category, r.status) for r in results} == {
        (str(sku), path, "shoes", "ok") for sku, path in shoes.items()
    }
    # Written back onto the user's rows by their own id; nothing else in the table changed.
    after = {r.sku: r for r in read_table(spark, table).collect()}
    described = {r.image_id: r.description for r in results}
    assert {sku: r.description_v2 for sku, r in after.items() if r.description_v2} == {
        sku: described[str(sku)] for sku in shoes
    }
    assert all(after[sku].description_v2 is None for sku in after if sku not in shoes)
    assert [after[sku].note for sku in sorted(after)] == [f"owner-{i}" for i in range(8)] + [
        "no image yet"]
    again = run_describe(config, spark, make_engine=make_fake_engine)
    assert (again.rows_pending, again.rows_processed) == (0, 0)


def test_ids_derived_from_paths_match_ingest_and_write_back_matches_on_the_path(
    spark, sample_images, tmp_path
):
    table = str(tmp_path / "assets")
    paths = sorted(str(p.resolve()) for p in sample_images.paths)[:3]
    spark.createDataFrame([(p, len(p)) for p in paths], "location STRING, size INT") \
        .write.format("delta").save(table)
    config = describe_config(
        tmp_path, "fake", input_table=table, mlflow__enabled=False,
        input={"id_column": None, "path_column": "location"}, source_column__enabled=True,
    )
    assert sorted(r.image_id for r in read_inputs(spark, config).collect()) == sorted(
        image_id_for(p) for p in paths)
    run_describe(config, spark, make_engine=make_fake_engine)
    results = {r.path: r for r in read_table(spark, config.results_table).collect()}
    assert {p: r.image_id for p, r in results.items()} == {p: image_id_for(p) for p in paths}
    written = {r.location: r.description_v2 for r in read_table(spark, table).collect()}
    assert written == {p: results[p].description for p in paths}


def test_a_missing_column_or_a_bad_filter_names_the_field(spark, tmp_path):
    table = str(tmp_path / "t")
    spark.createDataFrame([("a", "/x.jpg")], "id STRING, path STRING").write.format("delta").save(table)
    config = describe_config(tmp_path, "fake", input_table=table)
    with pytest.raises(ConfigError, match=r"input.id_column: .* has no column 'image_id' \(it has "
                       r"id, path\); set it to the table's id column, or to null"):
        read_inputs(spark, config)
    bad = describe_config(tmp_path, "fake", input_table=table,
                          input={"id_column": "id", "filter": "colour = 'red'"})
    with pytest.raises(ConfigError, match=r"input.filter \"colour = 'red'\" on .*colour"):
        read_inputs(spark, bad)
    assert latest_version(spark, table) == 0


def test_extra_columns_cannot_shadow_result_columns():
    with pytest.raises(ConfigError, match=r"extra_columns \['model', 'status'\] are result columns"):
        from jobs.config import DescribeConfig, load_config

        load_config(DescribeConfig, None, [
            "input_table=/t", "results_table=/r", "engine.model=m",
            "input.extra_columns=[status, model, category]",
        ])
