"""Delta table helpers: a table is named by a path (contains '/' or a URL scheme) or by a
metastore name (``db.table``). Writes that other jobs may race go through
``with_concurrency_retries``; idempotent MERGEs through ``delta_txn``."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from delta.tables import DeltaTable
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("candid.delta")

# Delta's optimistic-concurrency conflicts: another writer committed first; retrying is safe.
DELTA_CONFLICTS = (
    "DeltaConcurrentModificationException", "ConcurrentWriteException",
    "MetadataChangedException", "ProtocolChangedException", "ConcurrentAppendException",
    "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
)
T = TypeVar("T")


class ConcurrentWriteError(RuntimeError):
    """Another writer kept winning the race for the table after all retries."""


def is_path(ref: str) -> bool:
    return "/" in ref or "://" in ref


def delta_table(spark: SparkSession, ref: str) -> DeltaTable:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, ref) if is_path(ref) else DeltaTable.forName(spark, ref)


def table_exists(spark: SparkSession, ref: str) -> bool:
    from delta.tables import DeltaTable

    if is_path(ref):
        return DeltaTable.isDeltaTable(spark, ref)
    return spark.catalog.tableExists(ref)


def has_log_folder(spark: SparkSession, path: str) -> bool:
    """Whether ``path/_delta_log`` exists (through Hadoop's FileSystem, so any scheme works) -
    also while a creator has made the folder but not yet written its first commit."""
    jvm = spark.sparkContext._jvm
    log_path = jvm.org.apache.hadoop.fs.Path(path.rstrip("/") + "/_delta_log")
    filesystem = log_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return bool(filesystem.exists(log_path))


def read_table(spark: SparkSession, ref: str, version: int | None = None) -> DataFrame:
    """Read a Delta table, optionally at a fixed version (time travel)."""
    if not table_exists(spark, ref):
        raise FileNotFoundError(f"no Delta table at {ref!r}")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(ref) if is_path(ref) else reader.table(ref)


def latest_version(spark: SparkSession, ref: str) -> int:
    return int(delta_table(spark, ref).history(1).select("version").first()[0])


def create_table_if_missing(
    spark: SparkSession, ref: str, schema_ddl: str, partition_by: Sequence[str] = (),
    properties: Mapping[str, str] | None = None,
) -> None:
    """Create an empty Delta table with ``schema_ddl`` (and table ``properties``) unless one
    exists (racing creators are fine: createIfNotExists is atomic in the Delta log)."""
    from delta.tables import DeltaTable
    from pyspark.sql.types import StructType

    if not is_path(ref):
        _create_named_table_if_missing(spark, ref, schema_ddl, partition_by, properties or {})
        return
    builder = DeltaTable.createIfNotExists(spark).location(ref)
    builder = builder.addColumns(StructType.fromDDL(schema_ddl))
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    builder.execute()


def _create_named_table_if_missing(
    spark: SparkSession, name: str, schema_ddl: str, partition_by: Sequence[str],
    properties: Mapping[str, str],
) -> None:
    """``create_table_if_missing`` for a metastore name, in SQL: Delta's table builder
    (``tableName``, delta-spark 4.4) parses at most ``db.table`` and fails on a catalog name
    such as ``spark_catalog.default.images`` with a syntax error; SQL takes any multipart
    name."""
    partitioned = (f" PARTITIONED BY ({', '.join(f'`{c}`' for c in partition_by)})"
                   if partition_by else "")
    props = ", ".join(f"'{sql_str(k)}' = '{sql_str(v)}'" for k, v in properties.items())
    spark.sql(f"CREATE TABLE IF NOT EXISTS {name} ({schema_ddl}) USING DELTA{partitioned}"
              + (f" TBLPROPERTIES ({props})" if props else ""))


@contextmanager
def delta_txn(spark: SparkSession, app_id: str, version: int) -> Iterator[None]:
    """Make the Delta writes inside idempotent: a commit already made with (app_id, version)
    is skipped. MERGE honours only these session confs (not writer options)."""
    keys = ("spark.databricks.delta.write.txnAppId", "spark.databricks.delta.write.txnVersion")
    spark.conf.set(keys[0], app_id)
    spark.conf.set(keys[1], str(int(version)))
    try:
        yield
    finally:
        for key in keys:
            spark.conf.unset(key)


def with_concurrency_retries(
    action: Callable[[], T],
    what: str,
    attempts: int = 6,
    base_delay_s: float = 0.5,
    also_retry: Callable[[BaseException], bool] | None = None,
) -> T:
    """Run ``action``, retrying Delta's concurrent-modification conflicts (and errors for which
    ``also_retry`` is true) with jittered exponential backoff; after ``attempts`` raise
    ``ConcurrentWriteError``."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as err:  # noqa: BLE001 - only conflicts are retried; see below
            if not (_is_concurrent_modification(err) or (also_retry and also_retry(err))):
                raise
            if attempt == attempts:
                raise ConcurrentWriteError(
                    f"{what}: another writer changed the table {attempts} times in a row "
                    f"({type(err).__name__}: {str(err).splitlines()[0]}); nothing of this chunk "
                    "was committed - rerun the job to continue"
                ) from err
            delay = base_delay_s * (2 ** (attempt - 1)) * (1 + random.random())
            log.warning("%s: concurrent write conflict, retry %d in %.1fs", what, attempt, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _is_concurrent_modification(err: BaseException) -> bool:
    """True for Delta's commit conflicts. In delta-spark's Python API they share no base class
    (``ConcurrentAppendException`` is *not* a ``DeltaConcurrentModificationException`` there,
    unlike in Scala), so each is checked; the JVM class name is matched too, for a conflict
    that reaches Python unconverted (a wrapped cause, Spark Connect)."""
    try:
        import delta.exceptions as delta_errors
    except ImportError:  # pragma: no cover
        delta_errors = None
    classes = tuple(
        getattr(delta_errors, name) for name in DELTA_CONFLICTS if hasattr(delta_errors, name)
    )
    if classes and isinstance(err, classes):
        return True
    text = f"{type(err).__name__}: {err}"
    return any(f"io.delta.exceptions.{name}" in text for name in DELTA_CONFLICTS)


def sql_str(value: str) -> str:
    """``value`` as the inside of a SQL string literal."""
    return value.replace("'", "''")


def comment_literal(text: str) -> str:
    """``text`` as a Spark SQL string literal for a ``COMMENT`` clause (Spark reads backslash
    escapes in literals, so quotes are escaped with one)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_table_ref(ref: str) -> str:
    """How SQL names ``ref``: delta.`path` for a path, the name itself for a metastore table."""
    return f"delta.`{ref}`" if is_path(ref) else ref


def comment_columns(spark: SparkSession, ref: str, comments: Mapping[str, str]) -> list[str]:
    """Give the table's columns the comments declared for them, where they differ (a table an
    older Candid created gets them on its next run); one metadata commit per changed column,
    none when all match. Returns the columns changed."""
    changed = []
    for column in read_table(spark, ref).schema.fields:
        wanted = comments.get(column.name)
        if wanted is None or column.metadata.get("comment") == wanted:
            continue
        statement = (f"ALTER TABLE {sql_table_ref(ref)} ALTER COLUMN `{column.name}` "
                     f"COMMENT {comment_literal(wanted)}")
        with_concurrency_retries(lambda s=statement: spark.sql(s),
                                 what=f"comment {ref}.{column.name}")
        changed.append(column.name)
    return changed
