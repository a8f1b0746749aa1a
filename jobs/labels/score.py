"""``candid labels score``: what human labels say about a run, and how far the automatic
signals agree with them (``jobs.labels.measures``), logged to MLflow.

Spark does the joins: each label (one per output: the latest verdict when several reviewers
labelled it) with its result row by key and run fingerprint (labels of outputs that are no
longer in the results table are counted and left out), with the latest ok self-check audit
row of that output when an audit table exists, and the ok rows of each labelled group counted
per ``low_visibility`` (the population the labelling page sampled). The labelled rows, a few
hundred, are then measured on the driver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from jobs.job_settings import TrackingSettings
from jobs.labels.measures import (
    CONFIDENCE_COLUMNS,
    GroupScore,
    LabelledRow,
    audit_agreement,
    confidence_separation,
    guardrail_agreement,
    stratum_scores,
)
from jobs.labels.report import LabelsReport, ScoreSources, score_lines, score_metrics
from jobs.labels.table import read_labels
from jobs.tables.delta_io import read_table, table_exists
from jobs.tables.results import RESULT_KEYS, with_fingerprint_column
from jobs.tracking.runs import RunTracker
from udfs.images.prepare import STATUS_OK

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

OUTPUT_KEYS = (*RESULT_KEYS, "run_fingerprint")
GROUP_KEYS = ("prompt_name", "prompt_version", "model", "run_fingerprint")
# MLflow takes at most 1000 metrics per batch.
METRICS_PER_BATCH = 500


def run_labels_score(spark: SparkSession, sources: ScoreSources,
                     tracking: TrackingSettings) -> LabelsReport:
    """Score the labels against the results (and audit) tables; log the report to MLflow.

    Raises:
        ValueError: no labels (for this reviewer), or none of their outputs is in the results.
    """
    labels = _labels(spark, sources)
    results = with_fingerprint_column(read_table(spark, sources.results_table))
    columns = [c for c in CONFIDENCE_COLUMNS if c in results.columns]
    joined = _join_results(_one_per_output(labels), results, columns)
    audit = _audit_rows(spark, sources.audit_table)
    if audit is not None:
        joined = _join_on(joined, audit, "left")
    records = [r.asDict() for r in joined.collect()]
    outputs = _one_per_output(labels).count()
    if not records:
        raise ValueError(f"none of the {outputs} labelled outputs is a row of "
                         f"{sources.results_table} now (re-described, or another table?)")
    report = LabelsReport(
        sources=sources, run_id="", labels=labels.count(), outputs=outputs,
        not_in_results=outputs - len(records),
        reviewers=sorted({r.reviewer for r in labels.select("reviewer").distinct().collect()}),
        audit_used=audit is not None, confidence_columns=columns,
        groups=_group_scores(records, _populations(results, joined), columns),
    )
    _log(report, tracking)
    return report


def _labels(spark: SparkSession, sources: ScoreSources) -> DataFrame:
    from pyspark.sql import functions as F

    labels = read_labels(spark, sources.labels_table)
    if sources.reviewer is not None:
        labels = labels.where(F.col("reviewer") == sources.reviewer)
    if labels.isEmpty():
        who = f" by {sources.reviewer}" if sources.reviewer else ""
        raise ValueError(f"no labels{who} in {sources.labels_table}")
    return labels


def _one_per_output(labels: DataFrame) -> DataFrame:
    """The latest verdict per output, whoever gave it; ``reviewers`` counts who labelled it."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    per_output = Window.partitionBy(*OUTPUT_KEYS)
    latest = per_output.orderBy(F.col("labelled_at").desc(), F.col("reviewer"))
    return (labels.withColumn("reviewers", F.size(F.collect_set("reviewer").over(per_output)))
            .withColumn("rank", F.row_number().over(latest)).where(F.col("rank") == 1)
            .select(*OUTPUT_KEYS, "verdict", "reviewers"))


def _join_on(left: DataFrame, right: DataFrame, how: str) -> DataFrame:
    """Join on the output key, null-safe (rows written before fingerprints have none)."""
    from pyspark.sql import functions as F

    condition = F.expr(" AND ".join(f"l.`{k}` <=> r.`{k}`" for k in OUTPUT_KEYS))
    extra = [F.col(f"r.`{c}`") for c in right.columns if c not in OUTPUT_KEYS]
    return left.alias("l").join(right.alias("r"), condition, how).select("l.*", *extra)


def _join_results(labels: DataFrame, results: DataFrame, columns: list[str]) -> DataFrame:
    """Labels of ok result rows, with what Candid measured about each."""
    from pyspark.sql import functions as F

    measured = results.where(F.col("status") == STATUS_OK).select(
        *OUTPUT_KEYS, "low_visibility", "guardrail_flags", *columns)
    return _join_on(labels, measured, "inner")


def _audit_rows(spark: SparkSession, audit_table: str | None) -> DataFrame | None:
    """The latest ok audit row per output: ``audit_unconfirmed`` is true when the model did
    not confirm at least one of its own claims."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not audit_table or not table_exists(spark, audit_table):
        return None
    audit = (read_table(spark, audit_table).where(F.col("status") == STATUS_OK)
             .withColumnRenamed("described_prompt_name", "prompt_name")
             .withColumnRenamed("described_prompt_version", "prompt_version")
             .withColumnRenamed("described_model", "model"))
    latest = Window.partitionBy(*OUTPUT_KEYS).orderBy(F.col("audited_at").desc())
    return (audit.withColumn("rank", F.row_number().over(latest)).where(F.col("rank") == 1)
            .select(*OUTPUT_KEYS, (F.size(F.coalesce("unconfirmed", F.array())) > 0)
                    .alias("audit_unconfirmed")))


def _populations(results: DataFrame, joined: DataFrame) -> dict[tuple, dict[Any, int]]:
    """Ok rows per labelled group and ``low_visibility`` value."""
    from pyspark.sql import functions as F

    groups = joined.select(*GROUP_KEYS).distinct()
    condition = F.expr(" AND ".join(f"r.`{k}` <=> g.`{k}`" for k in GROUP_KEYS))
    counted = (results.where(F.col("status") == STATUS_OK).alias("r")
               .join(groups.alias("g"), condition, "left_semi")
               .groupBy(*GROUP_KEYS, "low_visibility").count().collect())
    populations: dict[tuple, dict[Any, int]] = {}
    for row in counted:
        key = tuple(row[k] for k in GROUP_KEYS)
        populations.setdefault(key, {})[row["low_visibility"]] = int(row["count"])
    return populations


def _group_scores(records: list[dict[str, Any]], populations: Mapping[tuple, dict[Any, int]],
                  columns: list[str]) -> list[GroupScore]:
    grouped: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(tuple(record[k] for k in GROUP_KEYS), []).append(record)
    scores = []
    for key in sorted(grouped, key=lambda k: tuple(str(p) for p in k)):
        rows = [_labelled_row(r, columns) for r in grouped[key]]
        size = populations.get(key, {})
        scores.append(GroupScore(
            *key, labelled=len(rows), population=sum(size.values()),
            reviewers=max(r["reviewers"] for r in grouped[key]),
            strata=stratum_scores(rows, size), guardrails=guardrail_agreement(rows),
            audit=audit_agreement(rows), confidence=confidence_separation(rows, columns),
        ))
    return scores


def _labelled_row(record: Mapping[str, Any], columns: list[str]) -> LabelledRow:
    return LabelledRow(
        verdict=record["verdict"], low_visibility=record["low_visibility"],
        flagged=bool(record["guardrail_flags"]),
        audit_unconfirmed=record.get("audit_unconfirmed"),
        confidence={c: record.get(c) for c in columns},
    )


def _log(report: LabelsReport, tracking: TrackingSettings) -> None:
    tracker = RunTracker(tracking)
    sources = report.sources
    report.run_id = tracker.start(f"labels score {sources.labels_table}",
                                  {"candid.job": "labels-score"})
    tracker.log_params({"labels_table": sources.labels_table,
                        "results_table": sources.results_table,
                        "audit_table": sources.audit_table if report.audit_used else "none",
                        "reviewer": sources.reviewer or "all",
                        "reviewers": ", ".join(report.reviewers)})
    metrics = score_metrics(report.groups)
    names = sorted(metrics)
    for start in range(0, len(names), METRICS_PER_BATCH):
        tracker.log_metrics({n: metrics[n] for n in names[start:start + METRICS_PER_BATCH]})
    tracker.log_text(json.dumps(asdict(report), indent=1, default=str), "labels/score.json")
    tracker.log_text("\n".join(score_lines(report)) + "\n", "labels/score.txt")
    tracker.finish("FINISHED")
    report.tracking_failures = list(tracker.failures)
    tracker.raise_for_failures()

