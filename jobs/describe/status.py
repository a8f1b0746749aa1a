"""``candid status``: how far a describe config has got, from the Delta tables alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobs.config import DescribeConfig
from jobs.describe.commit import staging_table_for
from jobs.describe.pending import pending_rows
from jobs.tables.delta_io import latest_version, read_table, table_exists
from jobs.tables.identity import identify_run
from jobs.tables.inputs import read_inputs
from jobs.tables.results import RetryPolicy, fingerprint_counts
from jobs.tracking.prompt_store import resolve_prompt

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass
class RunStatus:
    input_table: str
    results_table: str
    prompt: str
    model: str
    fingerprint: str
    input_rows: int = 0
    ok: int = 0
    failed_final: dict[str, int] = field(default_factory=dict)
    failed_retryable: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    staged_leftover: int = 0
    # Rows of this prompt version and model per run fingerprint (None: written before them).
    fingerprints: dict[str | None, int] = field(default_factory=dict)


def read_status(spark: SparkSession, config: DescribeConfig) -> RunStatus:
    prompt = resolve_prompt(config.prompt, config.mlflow.tracking_uri)
    identity = identify_run(config, prompt)
    scope = identity.scope
    status = RunStatus(
        input_table=config.input_table, results_table=config.results_table,
        prompt=prompt.key, model=scope.model, fingerprint=identity.fingerprint,
    )
    # One input version for every count below, while a run or an appender writes to it.
    version = latest_version(spark, config.input_table)
    inputs = read_inputs(spark, config, version).select("image_id", "path")
    status.input_rows = inputs.count()
    retry = RetryPolicy(tuple(config.retry_statuses), config.max_attempts)
    rows = scope.rows(spark).join(inputs.select("image_id"), "image_id", "left_semi")
    for row in rows.groupBy("status", retry.retryable().alias("retryable")).count().collect():
        if row["status"] == "ok":
            status.ok += row["count"]
        else:
            bucket = status.failed_retryable if row["retryable"] else status.failed_final
            bucket[row["status"]] = bucket.get(row["status"], 0) + row["count"]
    status.fingerprints = fingerprint_counts(rows)
    current = rows.where(scope.current(identity.fingerprint, prompt.content_hash()))
    status.pending = pending_rows(inputs, current, retry).count()
    staging = staging_table_for(config.results_table)
    if table_exists(spark, staging):
        status.staged_leftover = read_table(spark, staging).where(scope.condition()).count()
    return status


def format_status(status: RunStatus) -> str:
    lines = [
        f"input   {status.input_table}: {status.input_rows} rows",
        f"results {status.results_table}",
        f"prompt  {status.prompt}   model {status.model}   fingerprint {status.fingerprint}",
        f"  ok                      {status.ok}",
    ]
    for title, bucket in (("failed (final)", status.failed_final),
                          ("failed (will retry)", status.failed_retryable)):
        for code, count in sorted(bucket.items()):
            lines.append(f"  {title:<22}  {count}  [{code}]")
    lines.append(f"  pending (incl. retries) {status.pending}")
    if status.staged_leftover:
        lines.append(
            f"  staged, not yet merged  {status.staged_leftover} (the next run merges them)"
        )
    for fingerprint, rows in sorted(status.fingerprints.items(), key=lambda kv: -kv[1]):
        name = fingerprint or "unknown (before fingerprints)"
        mark = " (this config)" if fingerprint == status.fingerprint else ""
        lines.append(f"  rows by fingerprint {name}: {rows}{mark}")
    return "\n".join(lines)
