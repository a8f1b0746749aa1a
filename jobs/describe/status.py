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
    from pyspark.sql import DataFrame, SparkSession


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
    # The run that committed last, and its rate (images/s between its first and last commit;
    # None before its second commit); the ETA is the pending rows at that rate.
    latest_run: str | None = None
    rate: float | None = None

    @property
    def eta_s(self) -> float | None:
        return self.pending / self.rate if self.rate else None


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
    status.latest_run, status.rate = latest_run_rate(scope.rows(spark))
    staging = staging_table_for(config.results_table)
    if table_exists(spark, staging):
        status.staged_leftover = read_table(spark, staging).where(scope.condition()).count()
    return status


def latest_run_rate(rows: DataFrame) -> tuple[str | None, float | None]:
    """The run with the newest row, and its rate from its commits: every row of a chunk has its
    staging write's ``written_at``, so the commits are the distinct ``written_at`` values."""
    from pyspark.sql import functions as F

    newest = rows.orderBy(F.col("written_at").desc()).select("run_id").limit(1).collect()
    if not newest:
        return None, None
    run_id = newest[0]["run_id"]
    commits = (rows.where(F.col("run_id") == run_id).groupBy("written_at").count()
               .orderBy("written_at").collect())
    return run_id, commit_rate([(c["written_at"].timestamp(), int(c["count"])) for c in commits])


def commit_rate(commits: list[tuple[float, int]]) -> float | None:
    """Rows per second from ``(time, rows)`` commits in time order: the rows committed after
    the first commit over the time since it (the first chunk's own duration is unknown)."""
    if len(commits) < 2:
        return None
    span = commits[-1][0] - commits[0][0]
    return sum(rows for _, rows in commits[1:]) / span if span > 0 else None


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
    if status.latest_run is not None:
        rate = f"{status.rate:.1f} images/s" if status.rate else "rate unknown (one commit)"
        eta = f", ETA {status.eta_s:.0f}s for the pending rows" if status.eta_s else ""
        lines.append(f"  latest run {status.latest_run}: {rate}{eta}")
    for fingerprint, rows in sorted(status.fingerprints.items(), key=lambda kv: -kv[1]):
        name = fingerprint or "unknown (before fingerprints)"
        mark = " (this config)" if fingerprint == status.fingerprint else ""
        lines.append(f"  rows by fingerprint {name}: {rows}{mark}")
    return "\n".join(lines)
