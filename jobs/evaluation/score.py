"""``candid eval score``: descriptions of the synthetic scenes scored against their truth, per
prompt version and model, with confidence intervals and paired verdicts between versions.

Steps: join the results table with the truth table (``jobs.evaluation.dataset``) on ``image_id``;
collect the joined rows (the eval set is small by design: hundreds to a few thousand images)
and score them on the driver (``udfs.evaluation.scores``); log everything to one MLflow run through
``RunTracker``: metrics per version, the paired verdicts, the per-image score table; write the
review page with the eval section and log it to the run.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.config import TrackingSettings
from jobs.evaluation.dataset import TRUTH_COLUMN
from jobs.review.page import PromptColumn, review_rows_from_records, write_review_page
from jobs.review.verdicts import GROUNDING_METRIC_NOTES, RatesColumn, render_ab_section
from jobs.tables.delta_io import latest_version, read_table
from jobs.tables.results import tally
from jobs.tracking.runs import RunTracker
from udfs.evaluation.ab import (
    DEFAULT_BOOTSTRAP,
    BootstrapSettings,
    PairedVerdict,
    ci_metrics,
    format_ci,
    verdict_metrics,
)
from udfs.evaluation.scores import (
    HEADLINE_METRICS,
    GroupScores,
    all_pairs,
    paired_verdicts,
    per_image_records,
    score_groups,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Result columns scoring reads.
SCORED_COLUMNS = ("image_id", "path", "prompt_name", "prompt_version", "model", "status",
                  "description", "structured_json", "guardrail_flags")
# MLflow metric names allow letters, digits and "_-. /:"; anything else in a label becomes "_".
_METRIC_UNSAFE = re.compile(r"[^\w\-. /:]")


@dataclass
class ScoreReport:
    """What ``run_score`` found; printed by the CLI."""

    results_table: str
    truth_table: str
    groups: list[GroupScores]
    verdicts: list[tuple[str, str, list[PairedVerdict]]]
    rows_without_truth: int
    run_id: str
    page: str
    tracking_failures: list[str] = field(default_factory=list)


def run_score(
    spark: SparkSession, results_table: str, truth_table: str, tracking: TrackingSettings,
    page: str | None = None, page_images: int = 100,
    settings: BootstrapSettings = DEFAULT_BOOTSTRAP,
) -> ScoreReport:
    """Score every result row that has truth, log to MLflow, write the review page.

    Raises:
        ValueError: no result row has truth (wrong tables, or nothing described yet).
    """
    results = read_table(spark, results_table)
    truth = read_table(spark, truth_table).select("image_id", TRUTH_COLUMN)
    joined = results.join(truth, "image_id").select(*SCORED_COLUMNS, TRUTH_COLUMN)
    records = [_record(r.asDict()) for r in joined.collect()]
    if not records:
        raise ValueError(f"no row of {results_table} has an image_id of {truth_table}: "
                         "describe the eval dataset's table first")
    groups = score_groups(records, settings)
    verdicts = [(a.label, b.label, paired_verdicts(a, b, settings)) for a, b in all_pairs(groups)]
    report = ScoreReport(
        results_table=results_table, truth_table=truth_table, groups=groups, verdicts=verdicts,
        rows_without_truth=results.join(truth, "image_id", "left_anti").count(), run_id="",
        page="",
    )
    tracker = RunTracker(tracking)
    report.run_id = tracker.start(f"eval score {', '.join(g.label for g in groups)}",
                                  {"candid.job": "eval-score"})
    report.page = _write_page(spark, joined, report, page, page_images)
    _log_score(tracker, report, spark, settings)
    report.tracking_failures = list(tracker.failures)
    tracker.raise_for_failures()
    return report


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "truth": json.loads(row.pop(TRUTH_COLUMN))}


def metric_label(label: str) -> str:
    """A group label as an MLflow metric name prefix.

    Example:
        >>> metric_label("describe/v2 on org/model@main")
        'describe/v2 on org/model_main'
    """
    return _METRIC_UNSAFE.sub("_", label)


def score_metrics(report: ScoreReport) -> dict[str, float]:
    """Every rate with its interval per group, and every paired verdict, as MLflow metrics."""
    metrics: dict[str, float] = {}
    for group in report.groups:
        prefix = metric_label(group.label)
        metrics[f"{prefix}.n_images"] = float(len(group.rows))
        metrics[f"{prefix}.failed_rows"] = float(group.failed)
        for name, ci in group.rates.items():
            metrics.update(ci_metrics(f"{prefix}.{name}", ci))
    for a, b, verdicts in report.verdicts:
        metrics.update(verdict_metrics(f"{metric_label(b)}_vs_{metric_label(a)}", verdicts))
    return metrics


def _log_score(tracker: RunTracker, report: ScoreReport, spark: SparkSession,
               settings: BootstrapSettings) -> None:
    import pandas as pd

    tracker.log_params({
        "results_table": report.results_table, "truth_table": report.truth_table,
        "results_version": latest_version(spark, report.results_table),
        "truth_version": latest_version(spark, report.truth_table),
        "confidence": settings.confidence, "bootstrap_resamples": settings.resamples,
        "bootstrap_seed": settings.seed,
        **{f"group.{metric_label(g.label)}": f"{g.prompt} on {g.model}" for g in report.groups},
    })
    tracker.log_metrics(score_metrics(report))
    frame = pd.DataFrame(per_image_records(report.groups))
    for column in frame.columns:  # lists as JSON text: MLflow tables hold scalars
        if frame[column].map(lambda v: isinstance(v, list)).any():
            frame[column] = frame[column].map(json.dumps)
    tracker.log_table(frame, "eval/per_image.json")
    verdicts = {f"{b} vs {a}": [asdict(v) for v in vs] for a, b, vs in report.verdicts}
    tracker.log_text(json.dumps(verdicts, indent=2), "eval/verdicts.json")
    tracker.log_text("\n".join(verdict_lines(report)) + "\n", "eval/verdicts.txt")
    tracker.log_artifact(report.page, "review")
    tracker.finish("FINISHED")


def eval_section(report: ScoreReport) -> str:
    """The review page's eval section for this report."""
    columns = [RatesColumn(g.label, f"{g.prompt} on {g.model}: {len(g.rows)} images scored",
                           g.rates) for g in report.groups]
    verdicts = [v for _, _, vs in report.verdicts for v in vs]
    intro = (f"{report.results_table} scored against the known truth of {report.truth_table}. "
             "Rates of a random-weight test model mean nothing (docs/EVAL.md).")
    return render_ab_section("Grounding against known truth", columns, verdicts,
                             notes=GROUNDING_METRIC_NOTES, intro=intro)


def _write_page(spark: SparkSession, joined: DataFrame, report: ScoreReport,
                page: str | None, images: int) -> str:
    """The review page: the eval section, then the usual prompt table and images."""
    from pyspark.sql import functions as F

    shown = joined.select("image_id").distinct().orderBy("image_id").limit(images)
    rows = joined.join(shown, "image_id", "left_semi").drop(TRUTH_COLUMN)
    records = [r.asDict() for r in rows.orderBy("image_id").collect()]
    columns = []
    for group in report.groups:
        name, version = group.prompt.split("/", 1)
        scope = joined.where((F.col("prompt_name") == name) & (F.col("prompt_version") == version)
                             & (F.col("model") == group.model))
        columns.append(PromptColumn(key=group.prompt, stats=tally(scope)))
    facts = {"results table": report.results_table, "truth table": report.truth_table,
             "eval run": report.run_id, "images shown": len({r["image_id"] for r in records})}
    target = page or str(Path("build/reviews") / f"eval-{report.run_id}.html")
    return write_review_page(target, "Candid grounding eval", columns,
                             review_rows_from_records(records), facts, [eval_section(report)])


def verdict_lines(report: ScoreReport) -> list[str]:
    """The short verdict the CLI prints: each version's headline rates, then each pair."""
    lines = []
    for g in report.groups:
        rates = "; ".join(f"{m} {format_ci(g.rates[m])}" for m in HEADLINE_METRICS
                          if m in g.rates)
        lines.append(f"  {g.label} ({g.prompt} on {g.model}, {len(g.rows)} images"
                     f"{', JSON mode' if g.json_mode else ''}, {g.failed} failed rows): {rates}")
    for a, b, verdicts in report.verdicts:
        for v in verdicts:
            if v.metric in HEADLINE_METRICS:
                lines.append(f"  {b} vs {a}: {v.line()}")
    return lines
