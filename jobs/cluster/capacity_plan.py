"""``candid plan``: a measured rate turned into a plan for a big run.

``candid plan --images 12800000 --gpus 10 --rate-from RUN`` reads the images/s one engine
achieved in an earlier describe run (``images_per_s_per_worker``, logged to MLflow by every run
from the executors' feeding stats) and prints the wall time, GPU-hours, a chunk size and the
number of chunks. ``--rate-from`` also takes a results table: the run that wrote its newest
rows is looked up. The arithmetic is pure (``plan_run``); only finding the rate touches MLflow
and Delta.

One engine per GPU is assumed (the shipped GPU profile: one executor, one task, one GPU). The
measured rate includes each worker's engine start; a long run amortises it, so the plan errs on
the slow side.

The plan is logged as an MLflow run of its own (``log_plan``: ``plan.*`` metrics); a describe
run that names it (``candid describe --plan RUN``) logs and prints its actual figures against
the planned ones (``actual_vs_plan``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.config import ConfigError
from jobs.job_settings import TrackingSettings
from jobs.tracking.runs import RunTracker

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

RATE_METRIC = "images_per_s_per_worker"
# The figures a plan and a describe run's cost ledger (jobs.describe.ledger) both have.
COMPARED = ("images_per_s_per_engine", "gpu_s_per_1000_images")
# A chunk is the work a crash can lose and the interval between commits: 10-30 minutes of the
# whole cluster's work keeps both the loss and the commit overhead small (docs/operations.md).
DEFAULT_CHUNK_MINUTES = 15.0
# Chunk sizes are rounded to this many rows, so configs stay readable.
CHUNK_ROUNDING = 10_000


@dataclass(frozen=True)
class RunPlan:
    """What ``images`` on ``gpus`` engines at ``rate_per_engine`` images/s costs."""

    images: int
    gpus: int
    rate_per_engine: float
    chunk_minutes: float

    @property
    def cluster_rate(self) -> float:
        return self.gpus * self.rate_per_engine

    @property
    def wall_hours(self) -> float:
        return self.images / self.cluster_rate / 3600.0

    @property
    def gpu_hours(self) -> float:
        return self.wall_hours * self.gpus

    @property
    def chunk_size(self) -> int:
        rows = self.cluster_rate * self.chunk_minutes * 60.0
        return max(CHUNK_ROUNDING, int(round(rows / CHUNK_ROUNDING)) * CHUNK_ROUNDING)

    @property
    def chunks(self) -> int:
        return math.ceil(self.images / self.chunk_size)

    def describe(self, source: str) -> str:
        """The plan as the lines ``candid plan`` prints.

        Example:
            >>> print(RunPlan(12_800_000, 10, 30.0, 15.0).describe("run abc"))
            12800000 images on 10 GPUs at 30.00 images/s per engine (from run abc): 300 images/s
              wall time 11.9 h, 118.5 GPU-hours
              chunk_size 270000 (about 15 min of the cluster's work each): 48 chunks
        """
        return "\n".join([
            f"{self.images} images on {self.gpus} GPUs at {self.rate_per_engine:.2f} images/s "
            f"per engine (from {source}): {self.cluster_rate:.0f} images/s",
            f"  wall time {self.wall_hours:.1f} h, {self.gpu_hours:.1f} GPU-hours",
            f"  chunk_size {self.chunk_size} (about {self.chunk_minutes:.0f} min of the "
            f"cluster's work each): {self.chunks} chunks",
        ])


def plan_run(
    images: int, gpus: int, rate_per_engine: float, chunk_minutes: float = DEFAULT_CHUNK_MINUTES
) -> RunPlan:
    """Validate and build a plan.

    Raises:
        ConfigError: a count or rate that cannot make a plan.
    """
    if images < 1 or gpus < 1:
        raise ConfigError(f"--images and --gpus must be at least 1, got {images} and {gpus}")
    if not rate_per_engine > 0:
        raise ConfigError(f"the measured rate must be above 0 images/s, got {rate_per_engine}")
    if not chunk_minutes > 0:
        raise ConfigError(f"--chunk-minutes must be above 0, got {chunk_minutes}")
    return RunPlan(images, gpus, rate_per_engine, chunk_minutes)


def measured_rate(
    spark_or_none: SparkSession | None, source: str, tracking: TrackingSettings
) -> tuple[float, str]:
    """(images/s per engine, where it came from) for an MLflow run id or a results table.

    Raises:
        ConfigError: the run has no such metric, or the table no rows with a run id.
    """
    run_id = source
    if spark_or_none is not None:
        run_id = newest_run_id(spark_or_none, source)
    tracker = RunTracker(tracking)
    if not tracker.resume(run_id):
        raise ConfigError(f"--rate-from: MLflow run {run_id} not found at {tracking.tracking_uri}"
                          + "".join(f"; {failure}" for failure in tracker.failures))
    rate = tracker.metric(run_id, RATE_METRIC)
    if rate is None or not rate > 0:
        raise ConfigError(f"--rate-from: run {run_id} logged no {RATE_METRIC} (a describe run "
                          "that described rows logs it)")
    return rate, f"run {run_id}" if run_id == source else f"run {run_id} of {source}"


def newest_run_id(spark: SparkSession, table: str) -> str:
    """The run id of the newest row that an engine described (copies have ``reused_from``)."""
    from pyspark.sql import functions as F

    from jobs.tables.delta_io import read_table

    newest = (
        read_table(spark, table).where(F.col("reused_from").isNull() & F.col("run_id").isNotNull())
        .orderBy(F.col("written_at").desc()).select("run_id").first()
    )
    if newest is None:
        raise ConfigError(f"--rate-from: {table} has no described rows")
    return newest["run_id"]


def plan_metrics(plan: RunPlan) -> dict[str, float]:
    """The plan as MLflow metrics, named like a describe run's cost ledger where they match."""
    return {
        "plan.images": float(plan.images), "plan.gpus": float(plan.gpus),
        "plan.images_per_s_per_engine": plan.rate_per_engine,
        "plan.gpu_s_per_1000_images": 1000.0 / plan.rate_per_engine,
        "plan.wall_hours": plan.wall_hours, "plan.gpu_hours": plan.gpu_hours,
        "plan.chunk_size": float(plan.chunk_size), "plan.chunks": float(plan.chunks),
    }


def log_plan(plan: RunPlan, source: str, tracking: TrackingSettings) -> str | None:
    """Log the plan as an MLflow run; its id, or None when tracking is off or failing."""
    tracker = RunTracker(tracking)
    run_id = tracker.start(f"plan {plan.images} images on {plan.gpus} GPUs",
                           tags={"candid.job": "plan"})
    if tracker.run_id is None:
        return None
    tracker.log_params({"images": plan.images, "gpus": plan.gpus, "rate_from": source,
                        "chunk_minutes": plan.chunk_minutes})
    tracker.log_metrics(plan_metrics(plan))
    tracker.finish("FINISHED")
    return run_id


def actual_vs_plan(
    actual: dict[str, float], planned: dict[str, float], plan_run: str
) -> tuple[dict[str, float], list[str]]:
    """Actual / planned for each compared figure both have: the ``vs_plan.*`` metrics and the
    lines to print."""
    ratios: dict[str, float] = {}
    lines = []
    for name in COMPARED:
        want, got = planned.get(f"plan.{name}"), actual.get(name)
        if want and got is not None:
            ratios[f"vs_plan.{name}"] = got / want
            lines.append(f"{name}: {got:.2f} actual vs {want:.2f} planned in run {plan_run} "
                         f"({got / want:.0%})")
    return ratios, lines
