"""``candid review``: the offline review page for a finished describe run.

Select rows by MLflow run id (``--run-id``) or by the config's prompt version and model; the page
is written locally and, when the run is known to MLflow, logged to that run as
``review/<file>.html`` so it opens from the MLflow UI.

With ``--label`` the page is for labelling (``jobs.review.labelling``): it shows a random
sample of the ok rows of the selection's prompt version and model (with the run's fingerprint
when a run is given), which is what ``candid labels score`` scales its rates to, and every
output gets verdict buttons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.config import DescribeConfig
from jobs.review.labelling import LabelSet
from jobs.review.page import PromptColumn, review_rows_from_records, write_review_page
from jobs.tables.delta_io import read_table
from jobs.tables.identity import identify_run
from jobs.tables.results import fingerprint_counts, tally, with_fingerprint_column
from jobs.tracking.prompt_store import resolve_prompt
from jobs.tracking.runs import RunTracker
from udfs.images.prepare import STATUS_OK

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class LabelSample:
    """Labelling mode: a random sample (by a hash of image_id and ``seed``) of ok rows."""

    seed: int = 0


def run_review(
    spark: SparkSession, config: DescribeConfig, run_id: str | None = None,
    limit: int = 200, out: str | None = None, label: LabelSample | None = None,
) -> tuple[str, int]:
    """Write the review page (a labelling page with ``label``); returns (path, rows shown).

    Raises:
        ValueError: no result rows match the selection.
    """
    selected, what = _selection(spark, config, run_id)
    totals = tally(selected)
    if not totals.rows:
        raise ValueError(f"no result rows for {what} in {config.results_table}")
    facts = {"selection": what, "results table": config.results_table,
             "rows in selection": totals.rows, "rows by status": dict(sorted(
                 totals.statuses.items()))}
    label_set = None
    if label is None:
        shown = selected.orderBy("image_id")
    else:
        shown, label_set = _label_sample(spark, config, selected, what, label, limit)
        facts["labelling sample"] = label_set.sample
    records = [r.asDict() for r in shown.limit(limit).collect()]
    facts["rows shown"] = len(records)
    columns = [_column(selected, record) for record in _first_per_prompt(records)]
    name = _file_name(run_id or what) + ("-labels" if label else "")
    target = out or str(Path("build/reviews") / f"{name}.html")
    title = f"Candid {'labelling' if label else 'review'}: {what}"
    path = write_review_page(target, title, columns, review_rows_from_records(records), facts,
                             label_set=label_set)
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


def _label_sample(
    spark: SparkSession, config: DescribeConfig, selected: DataFrame, what: str,
    label: LabelSample, limit: int,
) -> tuple[DataFrame, LabelSet]:
    """The rows to label: ok rows of the selection's prompt versions and models (and, for a
    run, its fingerprints: every row that run's configuration made, whichever run wrote it),
    in a random order fixed by the seed; ``limit`` of them are shown."""
    from pyspark.sql import functions as F

    population = selected.where(F.col("status") == STATUS_OK)
    if what.startswith("run "):
        keys = selected.select("prompt_name", "prompt_version", "model", "run_fingerprint")
        table = with_fingerprint_column(read_table(spark, config.results_table))
        population = table.where(F.col("status") == STATUS_OK).join(
            keys.distinct(), ["prompt_name", "prompt_version", "model", "run_fingerprint"],
            "left_semi")
    size = population.count()
    if not size:
        raise ValueError(f"no ok rows to label for {what} in {config.results_table}")
    drawn = population.orderBy(F.xxhash64("image_id", F.lit(label.seed)), "image_id")
    sample = (f"{min(limit, size)} of the {size} ok rows of {what}, drawn at random (hash of "
              f"image_id, seed {label.seed})")
    return drawn, LabelSet(selection=what, results_table=config.results_table, sample=sample)


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
