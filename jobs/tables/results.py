"""The results Delta table: its schema, its key, and every query Candid runs on it.

A results table holds rows of many prompt versions and models. The rows of one
``(prompt_name, prompt_version, model)`` form a ``ResultScope``: what a describe run completes,
what ``candid status`` and the review page report, what ``--replace`` re-describes. Each scope
also records the ``run_fingerprint`` of everything that produced its rows; ``fingerprints``
says which are present, so a run can refuse to mix two.

The write protocol (staging, MERGE, recovery) is in ``jobs.describe.commit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.tables.delta_io import comment_literal, read_table, table_exists
from jobs.tables.layout import BUCKET, BUCKET_COMMENT
from udfs.outputs.tally import Tally
from udfs.runner.describe import RESULT_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row, SparkSession

RESULT_KEYS = ("image_id", "prompt_name", "prompt_version", "model")
# Every results column with the comment Delta stores for it: the runner's columns
# (udfs.runner.describe.RESULT_COLUMNS) and the commit time the job adds.
RESULT_COLUMN_COMMENTS: dict[str, str] = {
    **{name: comment for name, _, comment in RESULT_COLUMNS},
    "written_at": "When the row was committed; of two rows with one key, the later one wins.",
    "structured": "JSON prompts: structured_json parsed into typed fields; null otherwise.",
    BUCKET: BUCKET_COMMENT,
}
RESULTS_SCHEMA_DDL = ", ".join(
    [f"`{n}` {t} COMMENT {comment_literal(RESULT_COLUMN_COMMENTS[n])}"
     for n, t, _ in RESULT_COLUMNS]
    + [f"`written_at` TIMESTAMP COMMENT {comment_literal(RESULT_COLUMN_COMMENTS['written_at'])}"]
)
FINGERPRINT = "run_fingerprint"


@dataclass(frozen=True)
class RetryPolicy:
    """Which failed rows a rerun describes again: a retryable status with attempts left."""

    statuses: tuple[str, ...]
    max_attempts: int

    def retryable(self, attempts_column: str = "attempts") -> Column:
        """True for a row worth retrying. A row without an attempts count has used none."""
        from pyspark.sql import functions as F

        return F.col("status").isin(list(self.statuses)) & (
            F.coalesce(F.col(attempts_column), F.lit(0)) < self.max_attempts
        )


@dataclass(frozen=True)
class ResultScope:
    """The rows of one prompt version and model in one results table."""

    table: str
    prompt_name: str
    prompt_version: str
    model: str

    @property
    def key(self) -> str:
        return f"{self.prompt_name}/{self.prompt_version} on {self.model}"

    def condition(self) -> Column:
        from pyspark.sql import functions as F

        return (
            (F.col("prompt_name") == self.prompt_name)
            & (F.col("prompt_version") == self.prompt_version)
            & (F.col("model") == self.model)
        )

    def current(self, fingerprint: str, prompt_hash: str) -> Column:
        """True for rows this fingerprint made. Rows written before fingerprints existed
        count when their prompt hash matches (what was recorded then)."""
        from pyspark.sql import functions as F

        legacy_match = F.coalesce(F.col("prompt_hash") == prompt_hash, F.lit(False))
        return F.coalesce(F.col(FINGERPRINT) == fingerprint, legacy_match)

    def rows(self, spark: SparkSession, version: int | None = None) -> DataFrame:
        """This scope's rows (at a fixed Delta version when given: a plan that must not change
        while the job writes to the table); an empty frame when the table does not exist."""
        if not table_exists(spark, self.table):
            return spark.createDataFrame([], RESULTS_SCHEMA_DDL)
        return with_fingerprint_column(read_table(spark, self.table, version)).where(
            self.condition()
        )

    def tally(self, spark: SparkSession) -> Tally:
        return tally(self.rows(spark))

    def fingerprints(
        self, spark: SparkSession, version: int | None = None
    ) -> dict[str | None, int]:
        """Rows per ``run_fingerprint`` (None: rows written before fingerprints existed)."""
        return fingerprint_counts(self.rows(spark, version))


def with_fingerprint_column(rows: DataFrame) -> DataFrame:
    """Tables written before fingerprints existed lack the column; read it as null there."""
    from pyspark.sql import functions as F

    if FINGERPRINT in rows.columns:
        return rows
    return rows.withColumn(FINGERPRINT, F.lit(None).cast("string"))


def fingerprint_counts(rows: DataFrame) -> dict[str | None, int]:
    counted = with_fingerprint_column(rows).groupBy(FINGERPRINT).count().collect()
    return {r[FINGERPRINT]: int(r["count"]) for r in counted}


def tally(rows: DataFrame) -> Tally:
    """Rows per status and per guardrail flag, counted by Spark in one aggregation."""
    return tally_of(tally_groups(rows))


def tally_groups(rows: DataFrame, *by: str) -> list[Row]:
    """Rows counted per status, flag list and ``by`` columns: one small aggregation (a few
    distinct groups reach the driver), from which ``tally_of`` makes the tally and a caller
    reads what else it grouped by, without a second pass over the rows."""
    return rows.groupBy("status", "guardrail_flags", *by).count().collect()


def tally_of(groups: list[Row]) -> Tally:
    return Tally.of_groups((r["status"], r["guardrail_flags"], r["count"]) for r in groups)
