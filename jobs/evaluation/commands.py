"""``candid eval ...`` and ``candid audit``: the honesty measurements (docs/EVAL.md). Registered
into the main parser by ``jobs.cli``.

- ``candid eval make-dataset --n 500 --out TABLE``: synthetic scenes with known truth, as an
  input table (``jobs.evaluation.dataset``);
- ``candid eval score --results TABLE --truth TABLE``: grounding rates per prompt version and
  model with confidence intervals, paired verdicts between versions (``jobs.evaluation.score``);
- ``candid audit --config F --sample N``: the model checks its own claims
(``jobs.evaluation.audit``).
"""

from __future__ import annotations

import argparse

from pydantic import ConfigDict, Field

from jobs.commandline.commands import (
    Context,
    Handler,
    add_config_args,
    add_optional_config_args,
    config_from,
)
from jobs.config import ConfigError
from jobs.job_settings import SparkSettings, TrackingSettings
from udfs.evaluation.ab import IntervalSettings, format_ci
from udfs.evaluation.selfcheck import AUDIT_UNITS
from udfs.settings import StrictModel

EVAL_EXPERIMENT = "candid-eval"


class EvalSettings(StrictModel):
    """What ``candid eval`` reads from a job config: its ``spark`` and ``mlflow`` sections. Any
    job YAML will do (``conf/demo.yaml``): its other sections are ignored, but these two are
    validated as strictly as everywhere else."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    spark: SparkSettings = Field(default_factory=SparkSettings, description="SparkSession.")
    mlflow: TrackingSettings = Field(
        default_factory=lambda: TrackingSettings(experiment=EVAL_EXPERIMENT),
        description="Where eval runs are logged (default: experiment candid-eval).",
    )


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    """Add the eval subcommands to the main parser's subparsers."""
    group = sub.add_parser("eval", help="grounding eval: synthetic scenes with known truth")
    commands = group.add_subparsers(dest="eval_command", required=True, metavar="EVAL_COMMAND")
    make = commands.add_parser("make-dataset", help="render scenes with known truth into an "
                               "input table (and their JPEGs beside it)")
    make.add_argument("--n", type=int, default=500, help="number of scenes [default: 500]")
    make.add_argument("--out", required=True, help="Delta table to write (path or name)")
    make.add_argument("--seed", type=int, default=0, help="same seed, same scenes [default: 0]")
    make.add_argument("--images", help="folder (or URL) for the JPEGs [default: <out>_images]")
    _add_optional_config(make)
    score = commands.add_parser("score", help="score descriptions of the scenes against truth")
    score.add_argument("--results", required=True, help="results Delta table of describe runs")
    score.add_argument("--truth", required=True, help="the eval dataset table (make-dataset)")
    score.add_argument("--page", help="review page to write [default: build/reviews/eval-<run>"
                       ".html]")
    score.add_argument("--page-images", type=int, default=100, help="images on the page")
    score.add_argument("--prompts", default="conf/prompts", help="prompt folder: JSON prompt "
                       "versions are read by their files' claims declarations [default: "
                       "conf/prompts]")
    add_detect_arg(score)
    _add_optional_config(score)
    audit = sub.add_parser("audit", help="self-check: the model answers yes/no about its own "
                           "claims, with the image (a hallucination proxy without truth)")
    add_config_args(audit)
    audit.add_argument("--sample", type=int, default=100, help="ok rows to audit")
    audit.add_argument("--out", help="audit Delta table [default: <results_table>_audit]")
    audit.add_argument("--seed", type=int, default=0, help="sample and control seed")
    audit.add_argument("--controls", type=int, default=2, help="control questions per row")
    audit.add_argument("--probe-prompt", default="conf/prompts/probes/probe_v1.yaml",
                       help="the versioned probe prompt file")
    audit.add_argument("--batch-rows", type=int, default=64,
                       help="rows per frame into the audit UDF (results come back a frame "
                       "at a time; the engine is fed across frames)")


def add_detect_arg(parser: argparse.ArgumentParser) -> None:
    """``--detect D``: also print the images needed to detect a difference D in a rate."""
    parser.add_argument("--detect", type=float, metavar="DIFF", help="a difference in a yes/no "
                        "rate to detect (e.g. 0.05): print the images needed (power 0.8, "
                        "alpha 0.05, paired)")


def check_detect(detect: float | None) -> None:
    """Refuse a ``--detect`` outside (0, 1) before Spark starts."""
    if detect is not None and not 0 < detect < 1:
        raise ConfigError(f"--detect must be a difference between 0 and 1, got {detect}")


def _add_optional_config(parser: argparse.ArgumentParser) -> None:
    add_optional_config_args(parser, "mlflow.experiment=my-eval")


def _cmd_eval(args: argparse.Namespace, context: Context) -> int:
    handlers = {"make-dataset": _make_dataset, "score": _score}
    return handlers[args.eval_command](args, context)


def _make_dataset(args: argparse.Namespace, context: Context) -> int:
    from jobs.evaluation.dataset import check_scene_count, default_images_dir, make_dataset

    settings = config_from(args, EvalSettings)
    check_scene_count(args.n)
    if args.images is None:
        default_images_dir(args.out)  # a metastore name needs --images: fail before Spark
    done = make_dataset(context.spark(settings.spark), args.n, args.out, args.seed, args.images)
    context.say(f"eval dataset: {done.rows} scenes (seed {done.seed}) in {done.table}")
    context.say(f"  images: {done.images}")
    subjects = ", ".join(f"{k}={v}" for k, v in done.subjects.items())
    context.say(f"  subjects: {subjects}; with a distractor at the edge: {done.with_distractor}")
    context.say(f"  next: candid describe --config F --set input_table={done.table} (once per "
                f"prompt version), then candid eval score --results <results> --truth "
                f"{done.table}")
    return 0


def _score(args: argparse.Namespace, context: Context) -> int:
    from jobs.evaluation.score import run_score, verdict_lines

    settings = config_from(args, EvalSettings)
    if args.page_images < 0:
        raise ConfigError("--page-images must be at least 0")
    check_detect(args.detect)
    report = run_score(
        context.spark(settings.spark), args.results, args.truth, settings.mlflow, args.page,
        args.page_images, IntervalSettings(detect=args.detect), args.prompts,
    )
    scored = sum(len(g.rows) for g in report.groups)
    context.say(f"scored {scored} ok result rows of {report.results_table} against "
                f"{report.truth_table} ({report.rows_without_truth} result rows have no truth)")
    for line in verdict_lines(report):
        context.say(line)
    _say_run(context, report.page, report.run_id, report.tracking_failures)
    return 0


def _cmd_audit(args: argparse.Namespace, context: Context) -> int:
    from jobs.evaluation.audit import AuditOptions, load_probe_prompt, run_audit
    from udfs.engines.vllm_env import apply_vllm_env

    config = config_from(args)
    load_probe_prompt(args.probe_prompt)  # a bad probe file fails before Spark starts
    if args.sample < 1 or args.controls < 0 or args.batch_rows < 1:
        raise ConfigError("--sample and --batch-rows must be at least 1, --controls at least 0")
    apply_vllm_env()  # before Spark starts: local executors inherit it
    options = AuditOptions(sample=args.sample, out=args.out, seed=args.seed,
                           n_controls=args.controls, probe_prompt=args.probe_prompt,
                           batch_rows=args.batch_rows)
    done = run_audit(config, context.spark(config.spark), options, context.make_engine)
    context.say(f"audited {done.rows_ok} of {done.rows} sampled ok rows of {done.scope}: "
                f"{done.claims} claims and {done.controls} controls asked "
                f"(controls from {done.controls_from})")
    for name, ci in done.rates.items():
        context.say(f"  {name} {format_ci(ci, units=AUDIT_UNITS.get(name, ''))}")
    context.say(f"audit rows: {done.out_table} (probe prompt {done.probe_prompt}, hash "
                f"{done.probe_hash}, audit run {done.run_id})")
    _say_run(context, None, done.run_id, done.tracking_failures)
    return 0


def _say_run(context: Context, page: str | None, run_id: str, failures: list[str]) -> None:
    if page:
        context.say(f"review page: {page}")
    context.say(f"MLflow run: {run_id}")
    for failure in failures:
        context.say(f"  WARNING: {failure}")


# Subcommand name -> handler, merged into jobs.cli's table.
EVAL_COMMANDS: dict[str, Handler] = {"eval": _cmd_eval, "audit": _cmd_audit}
