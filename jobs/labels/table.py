"""The labels Delta table: human verdicts keyed like the results table, plus who gave them.

A label is one reviewer's verdict on one output: the results key (image_id, prompt_name,
prompt_version, model), the run fingerprint of the output judged (a re-described row is a new
output and needs a new verdict), and the reviewer. ``candid labels import`` MERGEs on that
key: a label already there is left alone, unless the file holds a later verdict for it; so
importing the same file twice adds nothing. The table sits beside the results table
(``<results>_labels``) unless named.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from jobs.config import ConfigError
from jobs.labels.export_file import LabelExport
from jobs.tables.delta_io import (
    create_table_if_missing,
    delta_table,
    is_path,
    read_table,
    table_exists,
    with_concurrency_retries,
)
from jobs.tables.results import RESULT_KEYS, with_fingerprint_column

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LABELS_SUFFIX = "_labels"
LABEL_KEYS = (*RESULT_KEYS, "run_fingerprint", "reviewer")
LABEL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("image_id", "STRING"),
    ("prompt_name", "STRING"),
    ("prompt_version", "STRING"),
    ("model", "STRING"),
    ("run_fingerprint", "STRING"),
    ("reviewer", "STRING"),
    # One of jobs.review.vocabulary.VERDICT_IDS.
    ("verdict", "STRING"),
    # When the reviewer chose the verdict (the page's clock, UTC).
    ("labelled_at", "TIMESTAMP"),
    # The labelling page's label set id, selection and sampling, as the export says.
    ("label_set", "STRING"),
    ("selection", "STRING"),
    ("sample", "STRING"),
    ("source_file", "STRING"),
    ("imported_at", "TIMESTAMP"),
)
LABELS_SCHEMA_DDL = ", ".join(f"`{name}` {kind}" for name, kind in LABEL_COLUMNS)


@dataclass(frozen=True)
class ImportSummary:
    """What one import did: labels in the file, rows inserted and updated (the rest were in
    the table already), and labels whose output is not a row of the results table."""

    table: str
    in_file: int
    inserted: int
    updated: int
    not_in_results: int


def default_labels_table(results_table: str) -> str:
    """``<results>_labels`` beside a results table named by a path.

    Raises:
        ConfigError: the results table is a metastore name (give the labels table).
    """
    if not is_path(results_table):
        raise ConfigError(f"--labels is needed: {results_table!r} is a metastore name, "
                          "not a path")
    return results_table.rstrip("/") + LABELS_SUFFIX


def import_labels(spark: SparkSession, export: LabelExport, table: str,
                  results_table: str | None) -> ImportSummary:
    """MERGE the file's labels into ``table`` (created on first use); a label with the same
    key is replaced only by a later verdict."""
    source = _as_frame(spark, export)
    create_table_if_missing(spark, table, LABELS_SCHEMA_DDL)
    condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in LABEL_KEYS)

    def merge() -> tuple[int, int]:
        done = (delta_table(spark, table).alias("t")
                .merge(source.alias("s"), condition)
                .whenMatchedUpdateAll(condition="s.labelled_at > t.labelled_at")
                .whenNotMatchedInsertAll()
                .execute().first())
        return int(done["num_inserted_rows"]), int(done["num_updated_rows"])

    inserted, updated = with_concurrency_retries(merge, what=f"import labels into {table}")
    return ImportSummary(table, len(export.labels), inserted, updated,
                         _not_in_results(spark, source, results_table))


def read_labels(spark: SparkSession, table: str) -> DataFrame:
    """The labels table.

    Raises:
        FileNotFoundError: there is none (nothing imported yet).
    """
    if not table_exists(spark, table):
        raise FileNotFoundError(f"no labels table at {table!r}: import an export first "
                                "(candid labels import FILE)")
    return read_table(spark, table)


def _as_frame(spark: SparkSession, export: LabelExport) -> DataFrame:
    now = datetime.now(timezone.utc)
    rows = [(r.image_id, r.prompt_name, r.prompt_version, r.model, r.run_fingerprint,
             r.reviewer, r.verdict, r.labelled_at, export.label_set, export.selection,
             export.sample, export.path, now) for r in export.labels]
    return spark.createDataFrame(rows, LABELS_SCHEMA_DDL)


def _not_in_results(spark: SparkSession, labels: DataFrame, results_table: str | None) -> int:
    """Labels whose output (key and fingerprint) is not a row of the results table now."""
    if not results_table or not table_exists(spark, results_table):
        return labels.count()
    from pyspark.sql import functions as F

    results = with_fingerprint_column(read_table(spark, results_table))
    keys = [*RESULT_KEYS, "run_fingerprint"]
    matched = labels.alias("l").join(
        results.select(*keys).alias("r"),
        F.expr(" AND ".join(f"l.`{k}` <=> r.`{k}`" for k in keys)), "left_anti")
    return matched.count()
