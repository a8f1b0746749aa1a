"""``candid labels ...``: human verdicts from a labelling page (``candid review --label``).
Registered into the main parser by ``jobs.cli``.

- ``candid labels import FILE``: the page's JSON export into the labels Delta table
  (``jobs.labels.table``; importing a file twice adds nothing);
- ``candid labels score --results TABLE``: human-measured error rates scaled to the run, and the
  agreement of guardrails, self-check audit and confidence with the labels
  (``jobs.labels.score``), logged to MLflow.
"""

from __future__ import annotations

import argparse

from pydantic import ConfigDict, Field

from jobs.commandline.commands import Context, Handler, add_optional_config_args, config_from
from jobs.config import ConfigError, SparkSettings, TrackingSettings, absolute_table_ref
from jobs.tables.layout import audit_table_beside
from udfs.settings import StrictModel

LABELS_EXPERIMENT = "candid-labels"


class LabelsSettings(StrictModel):
    """What ``candid labels`` reads from a job config: its ``spark`` and ``mlflow`` sections
    (any job YAML will do; its other sections are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    spark: SparkSettings = Field(default_factory=SparkSettings, description="SparkSession.")
    mlflow: TrackingSettings = Field(
        default_factory=lambda: TrackingSettings(experiment=LABELS_EXPERIMENT),
        description="Where label scores are logged (default: experiment candid-labels).",
    )


def add_labels_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``candid labels import`` and ``candid labels score`` to the main parser."""
    group = sub.add_parser("labels", help="human verdicts from a labelling page "
                           "(candid review --label): import them, score the run with them")
    commands = group.add_subparsers(dest="labels_command", required=True,
                                    metavar="LABELS_COMMAND")
    load = commands.add_parser("import", help="a labelling page's JSON export into the labels "
                               "Delta table (the same file twice adds nothing)")
    load.add_argument("file", help="the exported JSON file (path or URL)")
    load.add_argument("--results", help="the results table the labels belong to [default: "
                      "the one the file names]")
    load.add_argument("--labels", help="labels Delta table [default: <results>_labels]")
    add_optional_config_args(load, "mlflow.experiment=my-labels")
    score = commands.add_parser("score", help="error rates measured by people, scaled to the "
                                "run, and how far guardrails, audit and confidence agree")
    score.add_argument("--results", required=True, help="the results Delta table")
    score.add_argument("--labels", help="labels Delta table [default: <results>_labels]")
    score.add_argument("--audit", help="self-check audit table [default: <results>_audit when "
                       "it exists]")
    score.add_argument("--reviewer", help="only this reviewer's labels [default: all; one "
                       "verdict per output, the latest]")
    add_optional_config_args(score, "mlflow.experiment=my-labels")


def _cmd_labels(args: argparse.Namespace, context: Context) -> int:
    handlers = {"import": _import, "score": _score}
    return handlers[args.labels_command](args, context)


def _import(args: argparse.Namespace, context: Context) -> int:
    from jobs.labels.export_file import LabelFileError, read_export
    from jobs.labels.table import default_labels_table, import_labels

    settings = config_from(args, LabelsSettings)
    try:
        export = read_export(args.file)  # a bad file fails before Spark starts
    except LabelFileError as err:
        raise ConfigError(str(err)) from None
    results = absolute_table_ref(args.results or export.results_table)
    if not results and not args.labels:
        raise ConfigError("the file names no results table: give --results or --labels")
    table = absolute_table_ref(args.labels) if args.labels else default_labels_table(results)
    done = import_labels(context.spark(settings.spark), export, table, results or None)
    context.say(f"{done.in_file} labels in {args.file}: {done.inserted} new, {done.updated} "
                f"updated, {done.in_file - done.inserted - done.updated} already in {done.table}")
    if done.not_in_results:
        context.say(f"  WARNING: {done.not_in_results} of them name no row of {results} "
                    "(re-described since, or another results table?)")
    context.say(f"  next: candid labels score --results {results}")
    return 0


def _score(args: argparse.Namespace, context: Context) -> int:
    from jobs.labels.report import score_lines
    from jobs.labels.score import ScoreSources, run_labels_score
    from jobs.labels.table import default_labels_table

    settings = config_from(args, LabelsSettings)
    results = absolute_table_ref(args.results)
    sources = ScoreSources(
        results_table=results,
        labels_table=absolute_table_ref(args.labels) if args.labels
        else default_labels_table(results),
        audit_table=absolute_table_ref(args.audit) if args.audit else audit_table_beside(results),
        reviewer=args.reviewer,
    )
    report = run_labels_score(context.spark(settings.spark), sources, settings.mlflow)
    for line in score_lines(report):
        context.say(line)
    context.say(f"MLflow run: {report.run_id}")
    for failure in report.tracking_failures:
        context.say(f"  WARNING: {failure}")
    return 0


# Subcommand name -> handler, merged into jobs.cli's table.
LABELS_COMMANDS: dict[str, Handler] = {"labels": _cmd_labels}
