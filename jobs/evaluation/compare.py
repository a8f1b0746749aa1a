"""Canary A/B of prompt versions on one stratified sample, before a full run.

``candid compare --config FILE --prompts v1,v2,v3 --sample 200`` draws a sample of the input
table stratified by source, size bucket and low-visibility (from image metrics of earlier runs,
``unknown`` where none exist), describes it with each prompt version (the normal describe job,
so results are resumable and carry full provenance), then writes:

- ``<out>/sample``: the sampled rows (Delta);
- ``<out>/results``: every prompt's result rows (Delta, the usual results schema);
- ``<out>/side_by_side``: one row per image, each prompt's output in its own columns (Delta);
- ``<out>/review.html``: the offline review page, also logged to the compare MLflow run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.commandline.console import Reporter
from jobs.config import DescribeConfig, InputSettings, PromptRef, SourceColumnSettings
from jobs.describe.run import run_describe
from jobs.describe.start import DescribeSummary
from jobs.review.page import PromptColumn, review_rows_from_records, write_review_page
from jobs.review.verdicts import RatesColumn, render_ab_section
from jobs.tables.delta_io import read_table, table_exists
from jobs.tables.identity import identify_run
from jobs.tables.inputs import read_inputs
from jobs.tables.results import fingerprint_counts, tally
from jobs.tracking.prompt_store import resolve_version
from jobs.tracking.runs import RunTracker
from udfs.evaluation.ab import (
    ANY_FLAG,
    DEFAULT_SETTINGS,
    IntervalSettings,
    PairedVerdict,
    ci_metrics,
    flag_names,
    flag_rate_cis,
    flag_verdicts,
    format_ci,
    format_power,
    rate_ci,
    verdict_metrics,
)
from udfs.evaluation.intervals import RateCI
from udfs.outputs.guardrails import GUARDRAIL_DESCRIPTIONS
from udfs.outputs.tally import Tally
from udfs.prompts import PromptSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("candid.compare")

# Longest original side, in pixels, that closes each size bucket.
SIZE_BUCKETS = ((64, "tiny<=64"), (128, "small<=128"), (256, "thumb<=256"))
SIDE_BY_SIDE_FIELDS = (
    "status", "description", "guardrail_flags", "finish_reason", "completion_tokens",
)


@dataclass(frozen=True)
class PromptFigures:
    """One prompt version over the whole sample (rows an earlier compare run described
    included: a rerun describes nothing new, and its figures must not come out empty)."""

    prompt_hash: str
    fingerprint: str
    run_id: str
    tally: Tally
    fingerprints: dict[str, int] = field(default_factory=dict)


@dataclass
class CompareSummary:
    versions: list[str]
    sample_rows: int
    out_dir: str
    run_id: str
    html_path: str
    per_prompt: dict[str, PromptFigures] = field(default_factory=dict)
    ab: FlagAB | None = None


@dataclass(frozen=True)
class FlagAB:
    """Flag rates with intervals per prompt version (``ok_rate`` over all sampled rows, each
    flag and ``any_flag`` over the ok rows, as ``Tally.flag_rates``), and for every pair of
    versions the paired verdict of each flag on the images both described (Newcombe's
    interval, McNemar's exact test and the sample-size figures on the per-image flags)."""

    rates: dict[str, dict[str, RateCI]]
    verdicts: list[tuple[str, str, list[PairedVerdict]]]
    settings: IntervalSettings = DEFAULT_SETTINGS


def stratum_column(inputs: DataFrame, metrics: DataFrame | None):
    """``inputs`` with a ``stratum`` column: source | size bucket | visibility."""
    from pyspark.sql import functions as F

    frame = inputs if metrics is None else inputs.join(metrics, "image_id", "left")
    side = F.greatest("orig_width", "orig_height") if metrics is not None else F.lit(None)
    size = F.when(side.isNull(), F.lit("size?"))
    for limit, name in SIZE_BUCKETS:
        size = size.when(side <= limit, F.lit(name))
    size = size.otherwise(F.lit("large"))
    visibility = (
        F.when(F.col("low_visibility"), "low-vis").when(~F.col("low_visibility"), "clear")
        .otherwise("vis?") if metrics is not None else F.lit("vis?")
    )
    source = F.coalesce(F.col("source"), F.lit("?")) if "source" in inputs.columns else F.lit("?")
    return frame.withColumn("stratum", F.concat_ws(" | ", source, size, visibility))


def stratified_sample(
    inputs: DataFrame, metrics: DataFrame | None, size: int, seed: int = 0
) -> DataFrame:
    """About ``size`` rows, each stratum represented in proportion and by at least one row;
    deterministic for a seed (rows ordered by a hash of image_id within a stratum)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frame = stratum_column(inputs, metrics)
    total = frame.count()
    if total == 0:
        raise ValueError("the input table is empty: nothing to compare")
    quota = (
        F.greatest(F.lit(1), F.round(F.col("stratum_rows") * F.lit(size / total))).cast("int")
    )
    order = Window.partitionBy("stratum").orderBy(F.xxhash64("image_id", F.lit(seed)), "image_id")
    return (
        frame.withColumn("stratum_rows", F.count("*").over(Window.partitionBy("stratum")))
        .withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= quota)
        .select("image_id", "path", "stratum")
    )


def latest_metrics(spark: SparkSession, results_table: str) -> DataFrame | None:
    """Per image, the evidence metrics of any earlier result row (they do not depend on the
    prompt), or None when there is no results table yet."""
    from pyspark.sql import functions as F

    if not table_exists(spark, results_table):
        return None
    return (
        read_table(spark, results_table)
        .where(F.col("orig_width").isNotNull())
        .groupBy("image_id")
        .agg(F.max("orig_width").alias("orig_width"), F.max("orig_height").alias("orig_height"),
             F.max("low_visibility").alias("low_visibility"))
    )


def side_by_side(results: DataFrame, prompts: list[PromptSpec]) -> DataFrame:
    """One row per image; ``<field>_<version>`` columns for each prompt."""
    from pyspark.sql import functions as F

    frame = results.select("image_id", "path").distinct()
    for prompt in prompts:
        columns = [F.col(f).alias(f"{f}_{prompt.version}") for f in SIDE_BY_SIDE_FIELDS]
        per_prompt = results.where(
            (F.col("prompt_name") == prompt.name) & (F.col("prompt_version") == prompt.version)
        ).select("image_id", *columns)
        frame = frame.join(per_prompt, "image_id", "left")
    return frame.orderBy("image_id")


def run_compare(
    config: DescribeConfig, versions: list[str], sample_size: int, out_dir: str,
    spark: SparkSession, seed: int = 0, reporter: Reporter | None = None,
    make_engine: Callable | None = None, settings: IntervalSettings = DEFAULT_SETTINGS,
) -> CompareSummary:
    """Sample, describe with each version, and write the side-by-side table and review page."""
    out = Path(out_dir).resolve()
    prompts = [resolve_version(config.prompt, v, config.mlflow.tracking_uri) for v in versions]
    sample = stratified_sample(
        read_inputs(spark, config), latest_metrics(spark, config.results_table),
        sample_size, seed,
    )
    _overwrite(sample, out / "sample")
    reporter = reporter or Reporter()
    reporter.phase(f"[compare] sample of {read_table(spark, str(out / 'sample')).count()} "
                   f"images in {out / 'sample'}")
    sampled = read_table(spark, str(out / "sample")).select("image_id")
    per_prompt = {}
    for prompt in prompts:
        canary = _canary_config(config, prompt, out)
        described = run_describe(canary, spark, prompt, reporter, make_engine)
        per_prompt[prompt.key] = _prompt_figures(spark, canary, prompt, described, sampled)
    results = read_table(spark, str(out / "results")).join(sampled, "image_id", "left_semi")
    table = side_by_side(results, prompts)
    _overwrite(table, out / "side_by_side")
    tracker = RunTracker(config.mlflow)
    run_id = tracker.start(f"compare {','.join(versions)}", {"candid.job": "compare"})
    records = [r.asDict() for r in results.orderBy("image_id").collect()]
    ab = flag_ab(records, prompts, settings)
    html = _write_page(records, prompts, per_prompt, out, run_id, config, ab)
    _log_compare(tracker, per_prompt, table, html, ab)
    return CompareSummary(
        versions=versions, sample_rows=read_table(spark, str(out / "sample")).count(),
        out_dir=str(out), run_id=run_id, html_path=html, per_prompt=per_prompt, ab=ab,
    )


def flag_ab(records: list[dict[str, Any]], prompts: list[PromptSpec],
            settings: IntervalSettings = DEFAULT_SETTINGS) -> FlagAB:
    """``FlagAB`` from the sampled result rows (one per image and prompt version)."""
    rows: dict[str, dict[str, list[str] | None]] = {p.version: {} for p in prompts}
    for r in records:
        if r["prompt_version"] in rows:
            flags = list(r["guardrail_flags"] or []) if r["status"] == "ok" else None
            rows[r["prompt_version"]][r["image_id"]] = flags
    flags = flag_names(rows)
    rates = {}
    for version, per_image in rows.items():
        ok = [0.0 if flags_ is None else 1.0 for flags_ in per_image.values()]
        ok_ci = rate_ci((ok, [1.0] * len(ok)), settings)
        rates[version] = {**({"ok_rate": ok_ci} if ok_ci else {}),
                          **flag_rate_cis(per_image, flags, settings)}
    versions = list(rows)
    verdicts = [(a, b, flag_verdicts((a, rows[a]), (b, rows[b]), flags, settings))
                for i, a in enumerate(versions) for b in versions[i + 1:]]
    return FlagAB(rates, verdicts, settings)


def _overwrite(frame: DataFrame, path: Path) -> None:
    frame.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(str(path))


def _canary_config(config: DescribeConfig, prompt: PromptSpec, out: Path) -> DescribeConfig:
    """The describe config for one prompt on the sample, into the compare folder."""
    return config.model_copy(update={
        "input_table": str(out / "sample"),
        # The sample has Candid's own columns (image_id, path), whatever the input table's are.
        "input": InputSettings(),
        "results_table": str(out / "results"),
        "prompt": PromptRef(version=prompt.version, name=prompt.name, dir=config.prompt.dir),
        "source_column": SourceColumnSettings(enabled=False),
        "max_flag_rate": {},
        "run_name": f"compare {prompt.key}",
    })


def _prompt_figures(
    spark: SparkSession, canary: DescribeConfig, prompt: PromptSpec,
    described: DescribeSummary, sampled: DataFrame,
) -> PromptFigures:
    rows = identify_run(canary, prompt).scope.rows(spark).join(sampled, "image_id", "left_semi")
    return PromptFigures(
        prompt_hash=described.prompt_hash, fingerprint=described.fingerprint,
        run_id=described.run_id, tally=tally(rows),
        fingerprints={fp or "unknown": n for fp, n in fingerprint_counts(rows).items()},
    )


def _write_page(
    records: list[dict[str, Any]], prompts: list[PromptSpec],
    per_prompt: dict[str, PromptFigures], out: Path, run_id: str, config: DescribeConfig,
    ab: FlagAB,
) -> str:
    columns = [
        PromptColumn(key=p.key, prompt_hash=p.content_hash(), description=p.description,
                     stats=per_prompt[p.key].tally, fingerprints=per_prompt[p.key].fingerprints)
        for p in prompts
    ]
    facts = {
        "compare run": run_id, "model": config.engine.recorded_model_id,
        "input table": config.input_table, "sample": str(out / "sample"),
        "describe runs": {key: figures.run_id for key, figures in per_prompt.items()},
    }
    section = render_ab_section(
        "Flag rates with confidence intervals",
        [RatesColumn(p.version, p.key, ab.rates.get(p.version, {})) for p in prompts],
        [v for _, _, vs in ab.verdicts for v in vs], notes=GUARDRAIL_DESCRIPTIONS,
        higher_is_better={"ok_rate"}, percent=True,
    )
    return write_review_page(
        out / "review.html", f"Candid prompt comparison: {', '.join(p.key for p in prompts)}",
        columns, review_rows_from_records(records), facts, [section],
    )


def _log_compare(
    tracker: RunTracker, per_prompt: dict[str, PromptFigures], table: DataFrame, html: str,
    ab: FlagAB,
) -> None:
    import json

    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    for key, figures in per_prompt.items():
        version = key.split("/")[-1]
        rows = figures.tally.rows
        metrics[f"{version}.ok_rate"] = figures.tally.ok / rows if rows else 0.0
        for flag, rate in figures.tally.flag_rates().items():
            metrics[f"{version}.flag_rate.{flag}"] = rate
        params[f"prompt_hash.{version}"] = figures.prompt_hash
        params[f"run_fingerprint.{version}"] = figures.fingerprint
    tracker.log_params(params)
    tracker.log_metrics({**metrics, **ab_metrics(ab)})
    tracker.log_text(json.dumps({f"{b} vs {a}": [asdict(v) for v in vs]
                                 for a, b, vs in ab.verdicts}, indent=2),
                     "comparison/verdicts.json")
    frame = table.toPandas()
    for column in frame.columns:
        if column.startswith("guardrail_flags_"):
            frame[column] = frame[column].map(
                lambda v: json.dumps(list(v)) if v is not None else None
            )
    tracker.log_table(frame, "comparison/side_by_side.json")
    tracker.log_text(
        json.dumps({k: asdict(v) for k, v in per_prompt.items()}, indent=2, default=dict),
        "comparison/per_prompt.json",
    )
    tracker.log_artifact(html, "review")
    tracker.finish("FINISHED")


def ab_lines(ab: FlagAB) -> list[str]:
    """What the CLI prints: each version's rates with intervals, each pair's verdicts, and
    for each pair what its sample could detect in ``any_flag`` (and the images needed for
    ``--detect``)."""
    lines = [f"  {version} rates: "
             + "; ".join(f"{name} {format_ci(ci, percent=True)}" for name, ci in rates.items())
             for version, rates in ab.rates.items()]
    lines += [f"  {b} vs {a}: {v.line(percent=True)}"
              for a, b, verdicts in ab.verdicts for v in verdicts]
    settings = ab.settings
    head = f"sample size (power {settings.power:g}, alpha {settings.alpha:g}, paired)"
    return lines + [
        f"  {b} vs {a} {head}: {v.metric}: "
        f"{format_power(v.detectable, settings.detect, v.needed, percent=True)} "
        f"({v.n_images} images)"
        for a, b, verdicts in ab.verdicts for v in verdicts
        if v.metric == ANY_FLAG and v.detectable is not None
    ]


def ab_metrics(ab: FlagAB) -> dict[str, float]:
    """Interval bounds of every rate, and every paired verdict, as MLflow metrics (the rates
    themselves are logged as ``<version>.ok_rate`` and ``<version>.flag_rate.<flag>``)."""
    metrics: dict[str, float] = {}
    for version, rates in ab.rates.items():
        for name, ci in rates.items():
            key = name if name == "ok_rate" else f"flag_rate.{name}"
            metrics.update(ci_metrics(f"{version}.{key}", ci))
    for a, b, verdicts in ab.verdicts:
        metrics.update(verdict_metrics(f"{b}_vs_{a}", verdicts))
    return metrics
