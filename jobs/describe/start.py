"""A describe run's state, and how it starts.

``open_run`` makes the tables, merges what an interrupted run staged, refuses to mix results of
another fingerprint into this prompt version (unless ``replace``), opens the MLflow run and
builds the ``DescribeTask`` the executors receive. ``DescribeRun`` then carries what every step
reads (config, prompt, scope, task, tracker, and what opening found) from step to step
(``jobs.describe.run``); it holds nothing a step writes. Each step returns what it produced,
and ``jobs.describe.report.finish_run`` assembles the ``DescribeSummary`` from those returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobs.config import ConfigError, DescribeConfig
from jobs.describe.commit import ensure_tables, recover_staged
from jobs.tables.delta_io import latest_version
from jobs.tables.identity import identify_run
from jobs.tables.results import ResultScope, RetryPolicy
from jobs.tracking.runs import RunTracker
from udfs.fingerprint import covered_settings, fingerprint_inputs
from udfs.outputs.tally import Tally
from udfs.prompts import PromptSpec
from udfs.runner.describe import DescribeTask
from udfs.runner.feeding import FeedStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

class FingerprintMismatch(ConfigError):
    """Rows of this prompt version and model were made by something else than this run."""


@dataclass(frozen=True)
class DescribeSummary:
    """What a describe run did; printed by the CLI and logged to MLflow. Assembled once, at the
    end, from the steps' returns (``jobs.describe.report.summarize``)."""

    run_id: str
    results_table: str
    input_table: str
    prompt: str
    prompt_hash: str
    fingerprint: str
    model: str
    input_version: int = -1
    rows_in: int = 0
    rows_pending: int = 0
    rows_to_describe: int = 0
    rows_processed: int = 0
    rows_recovered: int = 0
    rows_reused: int = 0
    rows_replaced: int = 0
    results_version_before: int = -1
    chunks: int = 0
    seconds: float = 0.0
    tally: Tally = field(default_factory=Tally)
    table_tally: Tally = field(default_factory=Tally)
    # The executors' feeding stats over every chunk (engine-busy time, tokens).
    engine: FeedStats = field(default_factory=FeedStats)
    tracking_failures: list[str] = field(default_factory=list)
    # Actual against planned figures, when the run names a plan (``plan_run``).
    vs_plan: list[str] = field(default_factory=list)
    registered_prompt: str | None = None

    @property
    def images_per_s(self) -> float:
        return self.rows_processed / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class RunOpening:
    """What ``open_run`` found and did before the first row was described."""

    rows_recovered: int  # staged rows of an interrupted run, merged now
    rows_replaced: int  # rows of other fingerprints that this run describes again (replace)
    results_version_before: int  # the results table's Delta version that still has them
    registered_prompt: str | None  # the prompt's MLflow registry URI, when registered


@dataclass(frozen=True)
class DescribeRun:
    """What the steps of one describe run read; none of them writes to it."""

    config: DescribeConfig
    prompt: PromptSpec
    scope: ResultScope
    retry: RetryPolicy
    task: DescribeTask
    tracker: RunTracker
    fingerprint: str
    opening: RunOpening


def open_run(
    config: DescribeConfig, spark: SparkSession, prompt: PromptSpec,
    make_engine: Callable | None = None,
) -> DescribeRun:
    """Everything before the first row is described. Refuses (``FingerprintMismatch``) before
    an MLflow run is opened, so a refused run leaves no trace."""
    identity = identify_run(config, prompt)
    scope, fingerprint = identity.scope, identity.fingerprint
    ensure_tables(spark, config.results_table)
    recovered = recover_staged(spark, config.results_table)
    stale = stale_rows(spark, scope, fingerprint, prompt)
    if stale and not config.replace:
        covered = covered_settings(
            fingerprint_inputs(prompt, identity.sampling, identity.engine, config.images)
        )
        raise FingerprintMismatch(mismatch_message(spark, scope, fingerprint, stale, covered))
    tracker = RunTracker(config.mlflow)
    run_id = tracker.start(
        config.run_name or f"{prompt.key} {scope.model}",
        tags={"candid.job": "describe", "candid.prompt": prompt.key,
              "candid.run_fingerprint": fingerprint},
    )
    registered = tracker.register_prompt(prompt) if config.prompt.register_in_mlflow else None
    task = DescribeTask(
        engine=identity.engine, images=config.images, prompt=prompt, sampling=identity.sampling,
        batch_size=config.batch_size, prep_threads=config.prep_threads,
        max_waiting_images=config.max_waiting_images, run_id=run_id, fingerprint=fingerprint,
        make_engine=make_engine,
    )
    opening = RunOpening(
        rows_recovered=recovered, rows_replaced=sum(stale.values()),
        results_version_before=latest_version(spark, config.results_table),
        registered_prompt=registered.uri if registered else None,
    )
    retry = RetryPolicy(tuple(config.retry_statuses), config.max_attempts)
    return DescribeRun(config, prompt, scope, retry, task, tracker, fingerprint, opening)


def stale_rows(
    spark: SparkSession, scope: ResultScope, fingerprint: str, prompt: PromptSpec
) -> dict[str | None, int]:
    """Rows of the scope that this run did not produce: {their fingerprint: rows}. Rows from
    before fingerprints existed (None) count as this run's when their prompt hash matches."""
    from pyspark.sql import functions as F

    rows = scope.rows(spark).where(~scope.current(fingerprint, prompt.content_hash()))
    counted = rows.groupBy(F.col("run_fingerprint")).count().collect()
    return {r["run_fingerprint"]: int(r["count"]) for r in counted}


def mismatch_message(
    spark: SparkSession, scope: ResultScope, fingerprint: str, stale: dict[str | None, int],
    covered: list[str],
) -> str:
    """Why the run is refused, what the fingerprint covers (``covered``: dotted setting names),
    and the two ways on."""
    found = ", ".join(
        f"{fp or 'unknown (written before fingerprints)'}: {rows} rows"
        for fp, rows in stale.items()
    )
    total = sum(stale.values())
    return (
        f"{scope.key}: {scope.table} already holds rows of this prompt version and model made "
        f"by another run fingerprint ({found}); this run's fingerprint is {fingerprint}. It "
        f"covers the rendered prompt, its output schema and {', '.join(covered)}, so something "
        "among them changed (`candid describe --explain` shows their values), or Candid was "
        "upgraded to a fingerprint layout that covers more settings (docs/operations.md, "
        "\"Fingerprint layouts\"). Either give the changed prompt a new version (a new file in "
        f"the prompt folder), or rerun with --replace to describe those {total} rows again (the "
        f"table's Delta history keeps the old ones: version "
        f"{latest_version(spark, scope.table)} has them)"
    )
