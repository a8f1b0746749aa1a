"""``candid review``: the offline review page for a finished describe run.

Select rows by MLflow run id (``--run-id``) or by the config's prompt version and model; the page
is written locally and, when the run is known to MLflow, logged to that run as
``review/<file>.html`` so it opens from the MLflow UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from jobs.config import DescribeConfig
from jobs.delta_io import read_table
from jobs.describe import resolve_prompt
from jobs.results import flag_counts, status_counts
from jobs.review_page import PromptColumn, review_rows_from_records, write_review_page
from udfs import guardrails

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def run_review(
    spark: "SparkSession", config: DescribeConfig, run_id: str | None = None,
    limit: int = 200, out: str | None = None,
) -> tuple[str, int]:
    """Write the review page; returns (path, rows shown).

    Raises:
        ValueError: no result rows match the selection.
    """
    from pyspark.sql import functions as F

    results = read_table(spark, config.results_table)
    if run_id:
        selected = results.where(F.col("run_id") == run_id)
        what = f"run {run_id}"
    else:
        prompt = resolve_prompt(config)
        selected = results.where(
            (F.col("prompt_name") == prompt.name) & (F.col("prompt_version") == prompt.version)
            & (F.col("model") == config.engine.recorded_model_id)
        )
        what = f"{prompt.key} on {config.engine.recorded_model_id}"
    totals = _run_totals(selected)
    if not totals["rows"]:
        raise ValueError(f"no result rows for {what} in {config.results_table}")
    records = [r.asDict() for r in selected.orderBy("image_id").limit(limit).collect()]
    keys = sorted({f"{r['prompt_name']}/{r['prompt_version']}" for r in records})
    hashes = {f"{r['prompt_name']}/{r['prompt_version']}": r["prompt_hash"] for r in records}
    columns = [PromptColumn(key=k, prompt_hash=hashes[k]) for k in keys]
    facts = {"selection": what, "results table": config.results_table,
             "rows in selection": totals["rows"], "rows shown": len(records),
             "status counts": totals["statuses"], "flag rates (all rows)": totals["flag_rates"]}
    target = out or str(Path("build/reviews") / f"{(run_id or what).replace('/', '_').replace(' ', '_')}.html")
    path = write_review_page(target, f"Candid review: {what}", columns,
                             review_rows_from_records(records), facts)
    if run_id and config.mlflow.enabled and not run_id.startswith("local-"):
        from mlflow import MlflowClient

        # Artifacts can be added to a finished run; the page then opens from the MLflow UI.
        MlflowClient(tracking_uri=config.mlflow.tracking_uri).log_artifact(run_id, path, "review")
    return path, len(records)


def _run_totals(selected) -> dict:
    statuses = status_counts(selected)
    flags = flag_counts(selected)
    ok = statuses.get("ok", 0)
    rates = {flag: round(count / ok, 4) for flag, count in flags.items()} if ok else {}
    known = {flag: rate for flag, rate in rates.items() if flag in guardrails.GUARDRAILS}
    return {"rows": sum(statuses.values()), "statuses": statuses, "flag_rates": known}
