"""The input table, whatever its shape: one function reads it into Candid's canonical columns.

A describe run accepts any Delta table with an id and a path per image (a product catalogue,
an asset table owned by another team), named by path or metastore name. ``read_inputs`` maps
its columns (``DescribeConfig.input``) onto ``image_id``, ``path``, the optional content hash
and the extra columns carried into the results, applies the row filter, and is the only reader
of the input table: planning, status, compare's sampling all go through it. The write-back
(``jobs.describe.write_back``) matches result rows to input rows with ``write_back_key``.

Without an id column, the id is derived from the path, in Spark SQL, exactly as ingest derives
it in Python (``image_id_for``): one path, one id, whichever way it was computed.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from jobs.config import ConfigError, DescribeConfig, InputSettings
from jobs.tables.delta_io import read_table

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

ID = "image_id"
PATH = "path"
# The content hash column of the canonical rows (identical bytes are described once).
HASH = "content_sha256"
# Where ingest found a row (its folder or manifest); kept when the table has it, for the
# strata of ``candid compare``; never carried into the results.
SOURCE = "source"
# Hex characters of sha256(path) that make a derived id: 96 bits, no collision in practice.
ID_HEX_CHARS = 24


def image_id_for(path: str) -> str:
    """Stable id from the path string: the same path always gets the same id.

    >>> image_id_for("s3://bucket/a.jpg") == image_id_for("s3://bucket/a.jpg")
    True
    >>> len(image_id_for("/data/x.png"))
    24
    """
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def image_id_column(path: Column) -> Column:
    """``image_id_for`` in Spark SQL (sha2 hashes a string's UTF-8 bytes, as Python does)."""
    from pyspark.sql import functions as F

    return F.substring(F.sha2(path.cast("string"), 256), 1, ID_HEX_CHARS)


def quoted(name: str) -> str:
    """A column name as a Spark SQL identifier (names with dots or spaces stay one column)."""
    return "`" + name.replace("`", "``") + "`"


def read_inputs(
    spark: SparkSession, config: DescribeConfig, version: int | None = None
) -> DataFrame:
    """The input rows in canonical columns: ``image_id`` (string), ``path`` (string), then
    ``content_sha256`` when the table has the configured hash column, ``source`` when it has
    one, then the configured extra columns unchanged. Only rows matching ``input.filter`` and
    having both an id and a path; optionally at a fixed Delta ``version``.

    Raises:
        ConfigError: a configured column is missing, or the filter does not parse or resolve
            (the message names the ``input.*`` field).
        FileNotFoundError: there is no Delta table at ``config.input_table``.
    """
    from pyspark.sql import functions as F

    settings, table = config.input, config.input_table
    raw = _filtered(read_table(spark, table, version), settings, table)
    _check_columns(raw.columns, settings, table)
    path = F.col(quoted(settings.path_column)).cast("string")
    image_id = (
        F.col(quoted(settings.id_column)).cast("string") if settings.id_column
        else image_id_column(path)
    )
    columns = [image_id.alias(ID), path.alias(PATH)]
    if settings.content_hash_column and settings.content_hash_column in raw.columns:
        columns.append(F.col(quoted(settings.content_hash_column)).cast("string").alias(HASH))
    if SOURCE in raw.columns and SOURCE not in settings.extra_columns:
        columns.append(F.col(SOURCE).cast("string"))
    columns += [F.col(quoted(name)) for name in settings.extra_columns]
    return raw.select(*columns).where(F.col(ID).isNotNull() & F.col(PATH).isNotNull())


def write_back_key(settings: InputSettings) -> tuple[str, str]:
    """(input table column, canonical column) that identify a row for the write-back: the id
    column, or the path when ids are derived from it (same path, same derived id)."""
    if settings.id_column:
        return settings.id_column, ID
    return settings.path_column, PATH


def _filtered(raw: DataFrame, settings: InputSettings, table: str) -> DataFrame:
    from pyspark.errors import AnalysisException

    if not settings.filter:
        return raw
    try:
        # Classic PySpark analyses eagerly: a bad filter fails here, before any job runs.
        return raw.where(settings.filter)
    except AnalysisException as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"input.filter {settings.filter!r} on {table}: {first}") from None


def _check_columns(columns: list[str], settings: InputSettings, table: str) -> None:
    wanted = {
        "input.path_column": [settings.path_column],
        "input.id_column": [settings.id_column] if settings.id_column else [],
        "input.extra_columns": settings.extra_columns,
    }
    for field, names in wanted.items():
        missing = [name for name in names if name not in columns]
        if missing:
            hint = (
                "; set it to the table's id column, or to null to derive ids from the path"
                if field == "input.id_column" else ""
            )
            raise ConfigError(
                f"{field}: input table {table} has no column {missing[0]!r} (it has "
                f"{', '.join(columns)}){hint}"
            )
