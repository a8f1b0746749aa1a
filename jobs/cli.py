"""``candid``: the command line. Each subcommand loads and validates its config (before Spark
starts), then calls one job function."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

from jobs.cluster.spark_session import build_spark
from jobs.commandline.commands import (
    Context,
    Handler,
    add_config_args,
    add_replace_arg,
    config_from,
)
from jobs.commandline.console import ConsoleReporter, Reporter, run_log
from jobs.commandline.doctor import DOCTOR_COMMANDS, add_doctor_command, refuse_on_driver_blockers
from jobs.config import ConfigError, IngestConfig
from jobs.evaluation.commands import (
    EVAL_COMMANDS,
    add_detect_arg,
    add_eval_commands,
    check_detect,
)
from jobs.labels.commands import LABELS_COMMANDS, add_labels_commands
from udfs.engines.vllm_env import prepare_process_env

log = logging.getLogger("candid.cli")
# "ValueError: ...", "pyspark.errors.SomethingException: ..." in a worker's traceback text.
_ERROR_LINE = re.compile(r"^[\w.]*(?:Error|Exception|Exit|Interrupt)\b.*:")
# A worker-level failure (udfs.engines.failures): the task failed, not some of its rows.
_WORKER_FATAL = "WorkerFatalError: "

DEMO_CONFIG = "conf/demo.yaml"
DEFAULT_TINY_MODEL = "build/tiny-qwen2-vl"
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_FLAGS = 3
EXIT_INTERRUPTED = 130
# Commands whose stdout is consumed by another program: no log file, no extra lines.
PLAIN_COMMANDS = frozenset({"submit-args"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="candid",
        description="Describe images at scale with a vision-language model, honestly: "
        "Delta in, vLLM in Spark pandas UDFs, Delta out, runs in MLflow.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="stream the run's log (Ivy, Spark, vLLM, workers) to the terminal too",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="build the tiny model and sample images, ingest, describe")
    demo.add_argument("--workdir", default="build/demo", help="where images and tables go")
    demo.add_argument("--images", type=int, default=24, help="number of sample images")
    demo.add_argument("--model-dir", default=DEFAULT_TINY_MODEL, help="tiny model folder")
    add_config_args(demo, DEMO_CONFIG)

    tiny = sub.add_parser(
        "make-tiny-model", help="build a random-weight Qwen2-VL with a locally trained tokenizer"
    )
    tiny.add_argument("dir", help="output folder")
    tiny.add_argument("--seed", type=int, default=0, help="same seed, byte-identical files")

    ingest = sub.add_parser("ingest", help="a folder or manifest of images into the input table")
    add_config_args(ingest)

    describe = sub.add_parser("describe", help="describe the input table's images into Delta")
    add_config_args(describe)
    add_replace_arg(describe)
    describe.add_argument(
        "--explain", action="store_true",
        help="print the effective configuration (prompt, sampling, engine, images, feeding, "
        "fingerprint and its inputs) as YAML and exit; Spark is not started",
    )
    describe.add_argument(
        "--plan", metavar="RUN", default=None,
        help="the MLflow run of a `candid plan`: report the actual images/s per engine and "
        "GPU-seconds per 1,000 images against the planned ones",
    )

    status = sub.add_parser("status", help="done / failed / pending rows, from Delta alone")
    add_config_args(status)

    submit = sub.add_parser(
        "submit-args", help="print spark-submit options for a config's Spark settings, e.g. "
        "spark-submit $(candid submit-args --config F) jobs/cli.py describe --config F",
    )
    add_config_args(submit)

    compare = sub.add_parser(
        "compare", help="canary A/B: prompt versions side by side on a stratified sample"
    )
    add_config_args(compare)
    compare.add_argument("--prompts", required=True, help="comma-separated versions, e.g. v1,v2,v3")
    compare.add_argument("--sample", type=int, default=200, help="about this many images")
    compare.add_argument("--out", default="build/compare", help="folder for tables and the page")
    compare.add_argument("--seed", type=int, default=0, help="sample seed")
    add_detect_arg(compare)
    add_replace_arg(compare)

    plan = sub.add_parser(
        "plan", help="wall time, GPU-hours and chunk size for a big run, from a measured rate"
    )
    plan.add_argument("--images", type=int, required=True, help="images to describe")
    plan.add_argument("--gpus", type=int, required=True, help="GPUs (one engine each)")
    plan.add_argument(
        "--rate-from", required=True,
        help="an MLflow run id of a describe run, or a results table (its newest run)",
    )
    plan.add_argument("--chunk-minutes", type=float, default=15.0,
                      help="cluster minutes of work per committed chunk [default: 15]")
    add_config_args(plan, DEMO_CONFIG)

    review = sub.add_parser("review", help="offline HTML review page of a describe run")
    add_config_args(review)
    review.add_argument("--run-id", help="MLflow run id of the describe run (else: the "
                        "config's prompt version and model)")
    review.add_argument("--limit", type=int, default=200, help="images shown at most")
    review.add_argument("--out", help="HTML file to write (default build/reviews/<run>.html)")
    review.add_argument("--label", action="store_true",
                        help="a labelling page: a random sample of ok rows with verdict buttons "
                        "and a JSON export for `candid labels import`")
    review.add_argument("--seed", type=int, default=0, help="--label: the sample's seed")
    add_eval_commands(sub)
    add_labels_commands(sub)
    add_doctor_command(sub)
    return parser


def main(argv: list[str] | None = None, make_engine: Callable | None = None) -> int:
    """Run one command. Its output beyond a few lines per phase goes to a log file under
    build/logs/ (printed first); errors are one line on stderr with the log's path.

    ``make_engine``: ``(EngineSettings, ImageSettings) -> Engine`` for the describing commands
    (pickled to the executors); None picks the backend the config names.
    """
    args = build_parser().parse_args(argv)
    if args.command in PLAIN_COMMANDS or getattr(args, "explain", False):
        return _run_command(args, Context(Reporter(), sys.stdout, sys.stderr, build_spark))
    with run_log(args.command, args.verbose) as run:
        context = Context(ConsoleReporter(run.out), run.out, run.err, build_spark, run.path,
                          make_engine)
        context.say(f"log: {_shown(run.path)}")
        return _run_command(args, context)


def _run_command(args: argparse.Namespace, context: Context) -> int:
    from jobs.cluster.spark_session import SparkStartError
    from jobs.describe.report import FlagRateExceeded
    from jobs.tables.delta_io import ConcurrentWriteError
    from jobs.tracking.runs import TrackingError

    handler: Handler = _COMMANDS[args.command]
    where = f" (details: {_shown(context.log_path)})" if context.log_path else ""
    prefix = f"candid {args.command}"
    try:
        return handler(args, context)
    except ConfigError as err:
        print(f"{prefix}: {err}", file=context.err)
        return EXIT_CONFIG
    except FlagRateExceeded as err:
        print(f"{prefix}: {err}", file=context.err)
        return EXIT_FLAGS
    except (ConcurrentWriteError, SparkStartError) as err:
        print(f"{prefix}: {err}", file=context.err)
        return EXIT_FAILED
    except TrackingError as err:
        print(f"{prefix}: results were written, but {err}", file=context.err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted{where}", file=context.err)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - one line here, the traceback in the log
        log.exception("%s failed", prefix)
        print(f"{prefix} failed: {one_line(err)}{where}", file=context.err)
        return EXIT_FAILED


def one_line(err: BaseException) -> str:
    """The most telling line of an error. A Python worker's exception reaches the driver as a
    long text whose last ``SomeError: ...`` line is the cause."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    causes = [line for line in lines if _ERROR_LINE.match(line)]
    text = causes[-1] if causes else (lines[0] if lines else "")
    text = f"{type(err).__name__}: {text}" if not causes else text
    if _WORKER_FATAL in text:
        # It reaches the driver only once Spark has given up on the task (PySpark raises the
        # worker's error alone, without Spark's attempt count): say so.
        text += " (Spark retried the task up to spark.task.maxFailures times, then stopped the job)"
    return text


def _shown(path: Path | None) -> str:
    """A path relative to the working directory when it lies below it."""
    if path is None:
        return ""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _cmd_make_tiny_model(args: argparse.Namespace, context: Context) -> int:
    from jobs.demo.tiny_model import TinyModelSpec, make_tiny_model

    path = make_tiny_model(args.dir, TinyModelSpec(seed=args.seed))
    context.say(f"tiny Qwen2-VL (random weights) written to {path}")
    return 0


def _cmd_ingest(args: argparse.Namespace, context: Context) -> int:
    config = config_from(args, IngestConfig)
    prepare_process_env()
    from jobs.tables.ingest import run_ingest

    summary = run_ingest(config, context.spark(config.spark))
    context.say(f"ingested {summary.found} images from {config.source}: {summary.inserted} new, "
                f"{summary.table_rows} rows in {summary.table}")
    return 0


def _cmd_describe(args: argparse.Namespace, context: Context) -> int:
    config = config_from(args)
    if args.plan:
        config = config.model_copy(update={"plan_run": args.plan})
    prepare_process_env()
    from jobs.tracking.prompt_store import resolve_prompt

    # Before Spark starts: a bad prompt fails in a second.
    prompt = resolve_prompt(config.prompt, config.mlflow.tracking_uri)
    if args.explain:
        from jobs.describe.explain import explain_text

        context.say(explain_text(config, prompt))
        return 0
    from jobs.describe.report import summary_lines
    from jobs.describe.run import run_describe

    refuse_on_driver_blockers(config, context)
    summary = run_describe(
        config, context.spark(config.spark), prompt, context.reporter, context.make_engine
    )
    for line in summary_lines(summary, config):
        context.say(line)
    return 0


def _cmd_status(args: argparse.Namespace, context: Context) -> int:
    config = config_from(args)
    prepare_process_env()
    from jobs.describe.status import format_status, read_status

    context.say(format_status(read_status(context.spark(config.spark), config)))
    return 0


def _cmd_submit_args(args: argparse.Namespace, context: Context) -> int:
    from jobs.cluster.spark_session import submit_args

    config = config_from(args)
    context.say(" ".join(submit_args(config.spark)))
    return 0


def _cmd_compare(args: argparse.Namespace, context: Context) -> int:
    config = config_from(args)
    versions = [v.strip() for v in args.prompts.split(",") if v.strip()]
    if len(versions) < 2 or args.sample < 1:
        raise ConfigError("--prompts needs at least two versions and --sample at least 1")
    check_detect(args.detect)
    prepare_process_env()
    from jobs.evaluation.compare import ab_lines, run_compare
    from jobs.tracking.prompt_store import resolve_version
    from udfs.evaluation.ab import IntervalSettings

    for version in versions:  # every prompt checked before Spark starts
        resolve_version(config.prompt, version, config.mlflow.tracking_uri)
    summary = run_compare(
        config, versions, args.sample, args.out, context.spark(config.spark), args.seed,
        context.reporter, context.make_engine, IntervalSettings(detect=args.detect),
    )
    context.say(f"compared {', '.join(versions)} on {summary.sample_rows} sampled images")
    for key, figures in summary.per_prompt.items():
        rates = ", ".join(f"{k}={v:.0%}" for k, v in figures.tally.flag_rates().items()) or "none"
        context.say(f"  {key} (fingerprint {figures.fingerprint}): ok "
                    f"{figures.tally.ok}/{figures.tally.rows}; flags: {rates}")
    for line in ab_lines(summary.ab) if summary.ab else []:  # rates, verdicts, sample size
        context.say(line)
    context.say(f"side-by-side table: {summary.out_dir}/side_by_side")
    context.say(f"review page: {summary.html_path}")
    context.say(f"MLflow run: {summary.run_id}")
    return 0


def _cmd_plan(args: argparse.Namespace, context: Context) -> int:
    from jobs.cluster.capacity_plan import log_plan, measured_rate, plan_run

    config = config_from(args)
    plan_run(args.images, args.gpus, 1.0, args.chunk_minutes)  # the counts, before any I/O
    is_run_id = re.fullmatch(r"[0-9a-f]{32}", args.rate_from) is not None
    spark = None if is_run_id else context.spark(config.spark)
    rate, source = measured_rate(spark, args.rate_from, config.mlflow)
    plan = plan_run(args.images, args.gpus, rate, args.chunk_minutes)
    context.say(plan.describe(source))
    logged = log_plan(plan, source, config.mlflow)
    if logged:
        context.say(f"plan logged to MLflow run {logged} (compare a run with "
                    f"`candid describe --plan {logged}`)")
    return 0


def _cmd_review(args: argparse.Namespace, context: Context) -> int:
    config = config_from(args)
    prepare_process_env()
    from jobs.review.run import LabelSample, run_review

    label = LabelSample(seed=args.seed) if args.label else None
    try:
        path, shown = run_review(
            context.spark(config.spark), config, args.run_id, args.limit, args.out, label
        )
    except ValueError as err:
        print(f"candid review: {err}", file=context.err)
        return EXIT_FAILED
    if label is None:
        context.say(f"review page ({shown} images): {path}")
        return 0
    context.say(f"labelling page ({shown} sampled rows): {path}")
    context.say("  next: open it, give each output a verdict, export, then: candid labels "
                f"import FILE --results {config.results_table}")
    return 0


def _cmd_demo(args: argparse.Namespace, context: Context) -> int:
    workdir = Path(args.workdir)
    tables = workdir / "tables"
    overrides = [
        f"input_table={tables / 'images'}", f"results_table={tables / 'descriptions'}",
        f"engine.model={args.model_dir}",
    ]
    config = config_from(args, extra=overrides)
    prepare_process_env()
    from jobs.demo.run import make_sample_images
    from jobs.demo.tiny_model import make_tiny_model
    from jobs.describe.report import summary_lines
    from jobs.describe.run import run_describe
    from jobs.tables.ingest import run_ingest
    from jobs.tracking.prompt_store import resolve_prompt

    prompt = resolve_prompt(config.prompt, config.mlflow.tracking_uri)
    make_tiny_model(args.model_dir)
    samples = make_sample_images(workdir / "images", count=args.images)
    context.say(f"[demo] {len(samples.paths)} sample images in {samples.folder}; "
                f"tiny random-weight model in {args.model_dir} (its descriptions are noise)")
    spark = context.spark(config.spark)
    ingest = IngestConfig(source=str(samples.folder.resolve()), table=config.input_table)
    ingested = run_ingest(ingest, spark)
    context.say(f"[demo] input table {ingested.table}: {ingested.table_rows} rows "
                f"({ingested.inserted} new)")
    summary = run_describe(config, spark, prompt, context.reporter, context.make_engine)
    for line in summary_lines(summary, config):
        context.say(line)
    return 0


_COMMANDS: dict[str, Handler] = {
    "demo": _cmd_demo,
    "make-tiny-model": _cmd_make_tiny_model,
    "ingest": _cmd_ingest,
    "describe": _cmd_describe,
    "status": _cmd_status,
    "compare": _cmd_compare,
    "submit-args": _cmd_submit_args,
    "review": _cmd_review,
    "plan": _cmd_plan,
}

_COMMANDS.update(EVAL_COMMANDS)
_COMMANDS.update(LABELS_COMMANDS)
_COMMANDS.update(DOCTOR_COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
