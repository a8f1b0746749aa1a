"""Optionally, descriptions back onto the input table: one column per prompt version
(``description_v2``), added by schema evolution on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs.console import Reporter
from jobs.delta_io import delta_table, with_concurrency_retries
from jobs.describe_run import DescribeRun

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def write_back(spark: SparkSession, run: DescribeRun, reporter: Reporter) -> None:
    """MERGE this scope's current ok descriptions into the input table (when enabled)."""
    from pyspark.sql import functions as F

    settings = run.config.source_column
    if not settings.enabled:
        return
    column = f"{settings.column_prefix}{run.prompt.version}"
    table = run.config.input_table
    reporter.phase(f"[describe] writing {column} onto {table}")
    descriptions = (
        run.scope.rows(spark)
        .where(run.scope.current(run.fingerprint, run.prompt.content_hash()))
        .where(F.col("status") == "ok")
        .select("image_id", F.col("description").alias(column))
    )
    # Two runs of different prompt versions both evolve the input table's schema: the later
    # commit gets a MetadataChangedException and is retried.
    with_concurrency_retries(
        lambda: (
            delta_table(spark, table).alias("t")
            .merge(descriptions.alias("s"), "t.image_id = s.image_id")
            .withSchemaEvolution()
            .whenMatchedUpdateAll()
            .execute()
        ),
        what=f"write {column} into {table}",
    )
