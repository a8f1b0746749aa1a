"""Build the driver's SparkSession with Delta Lake, from a profile file plus overrides."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from jobs.config import ConfigError, SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DELTA_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def load_profile(path: str | Path) -> tuple[str | None, dict[str, str]]:
    """(master, confs) from a conf/spark/*.yaml profile."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"spark.profile: cannot read {path}: {err}") from err
    unknown = set(raw) - {"master", "conf"}
    if unknown:
        raise ConfigError(f"spark.profile {path}: unknown keys {sorted(unknown)}")
    return raw.get("master"), {str(k): str(v) for k, v in (raw.get("conf") or {}).items()}


def spark_confs(settings: SparkSettings) -> tuple[str | None, dict[str, str]]:
    """The master and the full conf map the session is built with (profile, then overrides)."""
    master, confs = load_profile(settings.profile) if settings.profile else (None, {})
    confs = {**DELTA_CONFS, **confs, **settings.conf}
    return settings.master or master, confs


def build_spark(settings: SparkSettings) -> "SparkSession":
    """Get or create the session. Under spark-submit (or in a notebook) the existing master
    wins; locally the profile's master is used. Delta's jars come through Maven coordinates
    (``configure_spark_with_delta_pip``) unless ``spark.jars.packages`` is already set."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    master, confs = spark_confs(settings)
    # Executors must run this very interpreter (the project's virtualenv), locally at least.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(settings.app_name)
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if master and not under_submit:
        builder = builder.master(master)
    for key, value in confs.items():
        builder = builder.config(key, value)
    if "spark.jars.packages" not in confs and not under_submit:
        builder = configure_spark_with_delta_pip(builder)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def delta_package() -> str:
    """Maven coordinate of the Delta jar matching the installed pyspark and delta-spark."""
    from importlib.metadata import version

    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"


def submit_args(settings: SparkSettings) -> list[str]:
    """``spark-submit`` options equivalent to ``build_spark(settings)``: under spark-submit the
    JVM starts before our code runs, so static confs (Delta's extensions, executor env) and the
    Delta package must be given on the command line. Values are not shell-quoted: meant for
    ``spark-submit $(candid submit-args ...)`` with confs that contain no spaces."""
    master, confs = spark_confs(settings)
    args = ["--master", master] if master else []
    if "spark.jars.packages" not in confs:
        args += ["--packages", delta_package()]
    for key, value in confs.items():
        args += ["--conf", f"{key}={value}"]
    args += ["--conf", f"spark.pyspark.python={sys.executable}"]
    return args
