"""Delta table helpers: a table is named by a path (contains '/' or a URL scheme) or by a
metastore name (``db.table``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from delta.tables import DeltaTable
    from pyspark.sql import DataFrame, SparkSession


def is_path(ref: str) -> bool:
    return "/" in ref or "://" in ref


def delta_table(spark: "SparkSession", ref: str) -> "DeltaTable":
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, ref) if is_path(ref) else DeltaTable.forName(spark, ref)


def table_exists(spark: "SparkSession", ref: str) -> bool:
    from delta.tables import DeltaTable

    if is_path(ref):
        return DeltaTable.isDeltaTable(spark, ref)
    return spark.catalog.tableExists(ref)


def has_log_folder(spark: "SparkSession", path: str) -> bool:
    """Whether ``path/_delta_log`` exists (through Hadoop's FileSystem, so any scheme works) -
    also while a creator has made the folder but not yet written its first commit."""
    jvm = spark.sparkContext._jvm
    log_path = jvm.org.apache.hadoop.fs.Path(path.rstrip("/") + "/_delta_log")
    filesystem = log_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return bool(filesystem.exists(log_path))


def read_table(spark: "SparkSession", ref: str, version: int | None = None) -> "DataFrame":
    """Read a Delta table, optionally at a fixed version (time travel)."""
    if not table_exists(spark, ref):
        raise FileNotFoundError(f"no Delta table at {ref!r}")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(ref) if is_path(ref) else reader.table(ref)


def latest_version(spark: "SparkSession", ref: str) -> int:
    return int(delta_table(spark, ref).history(1).select("version").first()[0])


def create_table_if_missing(
    spark: "SparkSession", ref: str, schema_ddl: str, partition_by: Sequence[str] = ()
) -> None:
    """Create an empty Delta table with ``schema_ddl`` unless one exists (racing creators are
    fine: createIfNotExists is atomic in the Delta log)."""
    from delta.tables import DeltaTable
    from pyspark.sql.types import StructType

    builder = DeltaTable.createIfNotExists(spark)
    builder = builder.location(ref) if is_path(ref) else builder.tableName(ref)
    builder = builder.addColumns(StructType.fromDDL(schema_ddl))
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    builder.execute()
