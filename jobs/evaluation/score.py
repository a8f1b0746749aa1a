"""``candid eval score``: descriptions of the synthetic scenes scored against their truth, per
prompt version and model, with confidence intervals and paired verdicts between versions.

Steps: join the results table with the truth table (``jobs.evaluation.dataset``) on ``image_id``;
collect the joined rows (the eval set is small by design: hundreds to a few thousand images)
and score them on the driver (``udfs.evaluation.scores``), JSON prompts read by the claims
declaration of their prompt file (found in the prompt folder by name and version); log
everything to one MLflow run through ``RunTracker``: metrics per version, the paired verdicts,
the sample-size figures, the confidence columns' separation (when the results table has them),
the per-image score table; write the review page with the eval section and log it to the run.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.evaluation.dataset import TRUTH_COLUMN
from jobs.job_settings import TrackingSettings, project_file
from jobs.review.page import PromptColumn, review_rows_from_records, write_review_page
from jobs.review.verdicts import GROUNDING_METRIC_NOTES, RatesColumn, render_ab_section
from jobs.tables.delta_io import latest_version, read_table
from jobs.tables.results import tally
from jobs.tracking.runs import RunTracker
from udfs.evaluation.ab import (
    DEFAULT_SETTINGS,
    IntervalSettings,
    PairedVerdict,
    ci_metrics,
    format_ci,
    format_power,
    power_answers,
    verdict_metrics,
)
from udfs.evaluation.intervals import CLOPPER_PEARSON, RateCI
from udfs.evaluation.power import PowerAnswer
from udfs.evaluation.scores import (
    CONFIDENCE_COLUMNS,
    HEADLINE_METRICS,
    METRIC_UNITS,
    ClaimFields,
    GroupScores,
    all_pairs,
    paired_verdicts,
    per_image_records,
    score_groups,
)
from udfs.prompts import find_prompt

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Result columns scoring reads.
SCORED_COLUMNS = ("image_id", "path", "prompt_name", "prompt_version", "model", "status",
                  "description", "structured_json", "guardrail_flags")
DEFAULT_PROMPT_DIR = "conf/prompts"
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
    settings: IntervalSettings = DEFAULT_SETTINGS


def run_score(
    spark: SparkSession, results_table: str, truth_table: str, tracking: TrackingSettings,
    page: str | None = None, page_images: int = 100,
    settings: IntervalSettings = DEFAULT_SETTINGS, prompt_dir: str = DEFAULT_PROMPT_DIR,
) -> ScoreReport:
    """Score every result row that has truth, log to MLflow, write the review page.

    Raises:
        ValueError: no result row has truth (wrong tables, or nothing described yet), or a
            group has JSON outputs that no prompt file in ``prompt_dir`` declares the claims of.
    """
    results = read_table(spark, results_table)
    truth = read_table(spark, truth_table).select("image_id", TRUTH_COLUMN)
    confidence = [c for c in CONFIDENCE_COLUMNS if c in results.columns]
    joined = results.join(truth, "image_id").select(*SCORED_COLUMNS, *confidence, TRUTH_COLUMN)
    records = [_record(r.asDict()) for r in joined.collect()]
    if not records:
        raise ValueError(f"no row of {results_table} has an image_id of {truth_table}: "
                         "describe the eval dataset's table first")
    groups = score_groups(records, claim_declarations(records, prompt_dir), settings)
    verdicts = [(a.label, b.label, paired_verdicts(a, b, settings)) for a, b in all_pairs(groups)]
    report = ScoreReport(
        results_table=results_table, truth_table=truth_table, groups=groups, verdicts=verdicts,
        rows_without_truth=results.join(truth, "image_id", "left_anti").count(), run_id="",
        page="", settings=settings,
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


def claim_declarations(records: list[dict[str, Any]], prompt_dir: str) -> dict[str, ClaimFields]:
    """``name/version`` -> claims declaration of each JSON prompt the rows name, from the
    prompt folder; a prompt not found there is left out (its rows are read as text, and
    ``score_groups`` refuses them if they are JSON outputs)."""
    declared = {}
    for name, version in sorted({(r["prompt_name"], r["prompt_version"]) for r in records}):
        try:
            spec = find_prompt(project_file(prompt_dir), version, name)
        except (OSError, ValueError):
            continue
        if spec.output.mode == "json":
            declared[spec.key] = dict(spec.claims)
    return declared


def metric_label(label: str) -> str:
    """A group label as an MLflow metric name prefix.

    Example:
        >>> metric_label("describe/v2 on org/model@main")
        'describe/v2 on org/model_main'
    """
    return _METRIC_UNSAFE.sub("_", label)


def score_metrics(report: ScoreReport) -> dict[str, float]:
    """Every rate with its interval per group, the confidence columns' AUROC and the
    guardrails' precision and recall, and every paired verdict, as MLflow metrics."""
    metrics: dict[str, float] = {}
    for group in report.groups:
        prefix = metric_label(group.label)
        metrics[f"{prefix}.n_images"] = float(len(group.rows))
        metrics[f"{prefix}.failed_rows"] = float(group.failed)
        for name, ci in group.rates.items():
            metrics.update(ci_metrics(f"{prefix}.{name}", ci))
        for column, auroc in group.separation.items():
            if auroc is not None:
                metrics.update(ci_metrics(f"{prefix}.auroc.{column}", auroc))
        agreement = group.guardrails
        for name in ("precision", "recall"):
            ci = getattr(agreement, name) if agreement is not None else None
            if ci is not None:
                metrics.update(ci_metrics(f"{prefix}.guardrails.{name}", ci))
    for a, b, verdicts in report.verdicts:
        metrics.update(verdict_metrics(f"{metric_label(b)}_vs_{metric_label(a)}", verdicts))
    for group, metric, _, found, needed in next_version_power(report):
        key = f"{metric_label(group.label)}.{metric}"
        if found.value is not None:
            metrics[f"{key}.detectable_diff"] = found.value
        if needed is not None and needed.value is not None:
            metrics[f"{key}.images_needed"] = float(needed.value)
    return metrics


def _log_score(tracker: RunTracker, report: ScoreReport, spark: SparkSession,
               settings: IntervalSettings) -> None:
    import pandas as pd

    tracker.log_params({
        "results_table": report.results_table, "truth_table": report.truth_table,
        "results_version": latest_version(spark, report.results_table),
        "truth_version": latest_version(spark, report.truth_table),
        "confidence": settings.confidence, "power": settings.power, "alpha": settings.alpha,
        "detect": settings.detect,
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
                           {**g.rates, **_separation_rates(g)}) for g in report.groups]
    verdicts = [v for _, _, vs in report.verdicts for v in vs]
    intro = (f"{report.results_table} scored against the known truth of {report.truth_table}. "
             "Rates of a random-weight test model mean nothing, its confidence separation "
             "least of all (docs/EVAL.md).")
    return render_ab_section("Grounding against known truth", columns, verdicts,
                             notes=GROUNDING_METRIC_NOTES, intro=intro)


def _separation_rates(group: GroupScores) -> dict[str, RateCI]:
    """The confidence columns' AUROC and the guardrails' precision and recall, as rows of the
    page's rates table (only when the results table has confidence columns)."""
    if not group.separation:
        return {}
    rates = {f"auroc_{c}": ci for c, ci in group.separation.items() if ci is not None}
    agreement = group.guardrails
    for name in ("precision", "recall"):
        ci = getattr(agreement, name) if agreement is not None else None
        if ci is not None:
            rates[f"guardrails_{name}"] = ci
    return rates


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
    """The short verdict the CLI prints: each version's headline rates, its confidence
    separation, then each pair; and what sample the differences need."""
    lines = []
    for g in report.groups:
        rates = "; ".join(f"{m} {format_ci(g.rates[m], units=METRIC_UNITS.get(m, ''))}"
                          for m in HEADLINE_METRICS if m in g.rates)
        lines.append(f"  {g.label} ({g.prompt} on {g.model}, {len(g.rows)} images"
                     f"{', JSON mode' if g.json_mode else ''}, {g.failed} failed rows): {rates}")
        lines += separation_lines(g)
    for a, b, verdicts in report.verdicts:
        lines += [f"  {b} vs {a}: {v.line()}" for v in verdicts if v.metric in HEADLINE_METRICS]
    return lines + sample_size_lines(report)


def separation_lines(group: GroupScores) -> list[str]:
    """How well each confidence column separates hallucinated rows, beside the guardrails."""
    if not group.separation:
        return []
    parts = [f"{column} AUROC {format_auroc(ci)}" for column, ci in group.separation.items()]
    agreement = group.guardrails
    if agreement is not None:
        for name in ("precision", "recall"):
            ci = getattr(agreement, name)
            parts.append(f"guardrails {name} {format_ci(ci) if ci is not None else 'n/a'}")
    return [f"    {group.label} confidence vs hallucination: " + "; ".join(parts)]


def format_auroc(ci: RateCI | None) -> str:
    """``0.81 (12 hallucinated, 88 grounded rows; 95% CI 0.70..0.90)``, or why there is none.

    Example:
        >>> from udfs.evaluation.separation import auroc_interval
        >>> format_auroc(auroc_interval([0.9, 0.2, 0.4], [True, False, False]))
        '1.00 (1 hallucinated, 2 grounded rows; 95% CI 0.03..1.00)'
    """
    if ci is None:
        return "n/a (needs rows with and without a hallucination)"
    positives = int(ci.events)
    return (f"{ci.estimate:.2f} ({positives} hallucinated, {ci.n_items - positives} grounded "
            f"rows; {ci.confidence:.0%} CI {ci.low:.2f}..{ci.high:.2f})")


def next_version_power(report: ScoreReport
                       ) -> list[tuple[GroupScores, str, int, PowerAnswer, PowerAnswer | None]]:
    """With one version only: for each yes/no headline rate, what a next version scored on
    the same images could show (independent outcomes assumed: no pair to observe)."""
    if report.verdicts:
        return []
    out = []
    for g in report.groups:
        for m in HEADLINE_METRICS:
            ci = g.rates.get(m)
            if ci is not None and ci.method == CLOPPER_PEARSON:
                found, needed = power_answers(ci.n_items, ci.estimate, None, report.settings)
                out.append((g, m, ci.n_items, found, needed))
    return out


def sample_size_lines(report: ScoreReport) -> list[str]:
    """Per pair (or, for one version, per next version on the same images): the smallest
    difference the sample could detect in each yes/no headline rate, and the images needed
    for ``settings.detect``."""
    settings = report.settings
    head = f"sample size (power {settings.power:g}, alpha {settings.alpha:g}, paired)"
    lines = []
    for a, b, verdicts in report.verdicts:
        for v in verdicts:
            if v.metric in HEADLINE_METRICS and v.detectable is not None:
                text = format_power(v.detectable, settings.detect, v.needed)
                lines.append(f"  {b} vs {a} {head}: {v.metric}: {text} ({v.n_images} images)")
    for g, m, n, found, needed in next_version_power(report):
        lines.append(f"  {g.label} vs a next version {head}: {m}: "
                     f"{format_power(found, settings.detect, needed)} ({n} images)")
    return lines
