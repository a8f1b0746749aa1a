"""What every ``candid`` command handler shares: the ``Context`` it prints to and starts Spark
through, and the argument helpers for config files, ``--set`` overrides, ``--conf`` Spark confs
and ``--replace``.
Command groups in other modules (``jobs.evaluation.commands``) register their subcommands with
these."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from jobs.commandline.console import Reporter
from jobs.config import DescribeConfig, SparkSettings, load_config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# A command handler: parsed arguments and the context in, an exit code out.
Handler = Callable[[argparse.Namespace, "Context"], int]


@dataclass(frozen=True)
class Context:
    """What a command handler prints to, how it starts Spark (``start_spark(settings,
    log_path)``: ``jobs.cluster.spark_session.build_spark``, handed in by ``jobs.cli`` so that
    the command line sits below the cluster code), where the JVM writes its log, and the engine
    factory a library caller or test injects (None: the backend registry)."""

    reporter: Reporter
    out: TextIO
    err: TextIO
    start_spark: Callable[[SparkSettings, Path | None], SparkSession]
    log_path: Path | None = None
    make_engine: Callable | None = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def spark(self, settings: SparkSettings) -> SparkSession:
        self.reporter.phase(f"[spark] starting ({_spark_start_note(settings)})")
        return self.start_spark(settings, self.log_path)


def _spark_start_note(settings: SparkSettings) -> str:
    if settings.delta_jars == "provided":
        return "Delta from the classpath"
    home = Path(settings.ivy_home).resolve()
    fresh = not (home / "jars").is_dir()
    return "first start: Delta's jars come from Maven Central" if fresh else "Delta jars cached"


def add_config_args(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--config FILE`` (required unless ``default``), ``--set`` and ``--conf``."""
    parser.add_argument(
        "--config", default=default, required=default is None,
        help=f"job YAML file (conf/*.yaml){' [default: ' + default + ']' if default else ''}",
    )
    add_override_args(parser)


def add_optional_config_args(parser: argparse.ArgumentParser, example: str) -> None:
    """``--config FILE`` for commands that only read its ``spark`` and ``mlflow`` sections,
    ``--set`` and ``--conf``; ``example`` is a ``--set`` shown in the help."""
    parser.add_argument("--config", help="a job YAML whose spark and mlflow sections to use "
                        "(e.g. conf/demo.yaml); default: local Spark, MLflow in build/mlflow")
    add_override_args(parser, example)


def add_override_args(
    parser: argparse.ArgumentParser, example: str = "batch_size=32 --set engine.dtype=bfloat16"
) -> None:
    """``--set key.sub=value`` (any config field) and ``--conf KEY=VALUE`` (a Spark conf)."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"override one config field, e.g. --set {example}. A key part in double quotes "
        'may hold dots: --set \'spark.conf."spark.sql.shuffle.partitions"=8\'',
    )
    parser.add_argument(
        "--conf", dest="spark_conf", action="append", default=[], metavar="KEY=VALUE",
        help="a Spark conf, as spark-submit takes it: sets spark.conf[KEY] to VALUE (text), "
        "e.g. --conf spark.hadoop.fs.s3a.endpoint=http://minio:9000",
    )


def add_replace_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--replace", action="store_true",
        help="describe again the rows of this prompt version and model that another run "
        "fingerprint made (changed prompt text, sampling, model revision...); the results "
        "table's Delta history keeps the old rows",
    )


def config_from(args: argparse.Namespace, model: type = DescribeConfig, extra=()):
    """The command's config: file, the command's own defaults (``extra``), --set overrides,
    flags that are config fields, then --conf Spark confs; later wins."""
    overrides = [*extra, *args.overrides]
    if getattr(args, "replace", False):
        overrides.append("replace=true")
    return load_config(model, args.config, overrides, getattr(args, "spark_conf", ()))


