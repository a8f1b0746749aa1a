"""``candid review``: the offline review page for a finished describe run.

Select rows by MLflow run id (``--run-id``) or by the config's prompt version and model; the page
is written locally and, when the run is known to MLflow, logged to that run as
``review/<file>.html`` so it opens from the MLflow UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from jobs.config import DescribeConfig
from jobs.describe.start import identify_run
from jobs.review.page import PromptColumn, review_rows_from_records, write_review_page
from jobs.tables.delta_io import read_table
from jobs.tables.results import fingerprint_counts, tally, with_fingerprint_column
from jobs.tracking.prompt_store import resolve_prompt
from jobs.tracking.runs import RunTracker

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def run_review(
    spark: SparkSession, config: DescribeConfig, run_id: str | None = None,
    limit: int = 200, out: str | None = None,
) -> tuple[str, int]:
    """Write the review page; returns (path, rows shown).

    Raises:
        ValueError: no result rows match the selection.
    """
    selected, what = _selection(spark, config, run_id)
    totals = tally(selected)
    if not totals.rows:
        raise ValueError(f"no result rows for {what} in {config.results_table}")
    records = [r.asDict() for r in selected.orderBy("image_id").limit(limit).collect()]
    columns = [_column(selected, record) for record in _first_per_prompt(records)]
    facts = {"selection": what, "results table": config.results_table,
             "rows in selection": totals.rows, "rows shown": len(records),
             "status counts": totals.describe_statuses()}
    target = out or str(Path("build/reviews") / f"{_file_name(run_id or what)}.html")
    path = write_review_page(target, f"Candid review: {what}", columns,
                             review_rows_from_records(records), facts)
    tracker = RunTracker(config.mlflow)
    if run_id and tracker.resume(run_id):
        # Artifacts can be added to a finished run; the page then opens from the MLflow UI.
        tracker.log_artifact(path, "review")
    return path, len(records)


def _selection(
    spark: SparkSession, config: DescribeConfig, run_id: str | None
) -> tuple[DataFrame, str]:
    from pyspark.sql import functions as F

    if run_id:
        rows = with_fingerprint_column(read_table(spark, config.results_table))
        return rows.where(F.col("run_id") == run_id), f"run {run_id}"
    prompt = resolve_prompt(config.prompt, config.mlflow.tracking_uri)
    scope = identify_run(config, prompt).scope
    return scope.rows(spark), scope.key


def _first_per_prompt(records: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for record in records:
        seen.setdefault(f"{record['prompt_name']}/{record['prompt_version']}", record)
    return [seen[key] for key in sorted(seen)]


def _column(selected: DataFrame, record: dict) -> PromptColumn:
    """A prompt's column with its figures over the whole selection, not just the rows shown."""
    from pyspark.sql import functions as F

    rows = selected.where(
        (F.col("prompt_name") == record["prompt_name"])
        & (F.col("prompt_version") == record["prompt_version"])
    )
    return PromptColumn(
        key=f"{record['prompt_name']}/{record['prompt_version']}",
        prompt_hash=record["prompt_hash"] or "", stats=tally(rows),
        fingerprints={fp or "unknown": n for fp, n in fingerprint_counts(rows).items()},
    )


def _file_name(text: str) -> str:
    return text.replace("/", "_").replace(" ", "_")
