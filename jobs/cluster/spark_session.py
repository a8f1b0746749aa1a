"""Build the driver's SparkSession with Delta Lake, from a profile file plus overrides.

Delta's jars are resolved by Spark's Ivy from Maven Central only, into a project-local Ivy
home (``SparkSettings.delta_jars``, ``ivy_settings``, ``ivy_home``): whatever the user's
``~/.m2`` or ``~/.ivy2*`` hold cannot change the outcome. A JVM that fails to start (most often:
a jar that cannot be downloaded) is reported as one ``SparkStartError`` line naming the artifact
and the log, not as a Java stack trace.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from jobs.cluster.gpu_layout import check_gpu_layout
from jobs.config import ConfigError
from jobs.job_settings import SparkSettings, project_file

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DELTA_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
PACKAGES_CONF = "spark.jars.packages"
EXCLUDES_CONF = "spark.jars.excludes"
# Delta's dependency tree (its kernel and Unity Catalog client) names older releases of jars that
# Spark already ships in its own jars folder: the Hadoop client (49 MB), Parquet, Jackson, log4j,
# the compression codecs. Resolved, they cost every new machine the download and every driver
# and executor a copy (86 MB in all for Delta 4.4.0, 13 MB without them), and sit on the
# classpath behind Spark's own, which win (parent-first). Left out of the resolution, Delta
# runs on Spark's releases, as where the platform provides Delta.
# tests/unit/test_cluster_settings.py checks that Spark ships each of them, and
# tests/spark/test_jar_resolution.py that none is resolved.
SPARK_SHIPPED_DEPENDENCIES = (
    "com.fasterxml.jackson.core:jackson-annotations",
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-databind",
    "com.github.luben:zstd-jni",
    "com.google.code.findbugs:jsr305",
    "commons-pool:commons-pool",
    "io.airlift:aircompressor",
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-jackson",
    "org.locationtech.jts:jts-core",
    "org.roaringbitmap:RoaringBitmap",
    "org.slf4j:slf4j-api",
    "org.xerial.snappy:snappy-java",
)
PYTHON_CONF = "spark.pyspark.python"
DRIVER_PYTHON_CONF = "spark.pyspark.driver.python"
# The folder name (--archives <file>#environment) the packed environment is unpacked under in
# each container's working directory; the GPU profile's discovery script lives in it too.
ARCHIVE_NAME = "environment"
# What Ivy prints for a jar or module it could not get (Spark relays it on the JVM's stderr):
# "download failed: org.slf4j#slf4j-api;2.0.13!slf4j-api.jar" for a jar, and
# ":: io.delta#delta-spark_4.2_2.13;9.9.9: not found" / "unresolved dependency: ..." for a module.
_IVY_PROBLEMS = (
    (re.compile(r"download failed: ([^\s,\]]+)"), "download failed: {}"),
    (re.compile(r"unresolved dependency: ([^\s,\]]+?):? not found"), "not found: {}"),
    (re.compile(r"::\s+([^\s:]+#[^\s:]+;[^\s:]+): not found"), "not found: {}"),
)
_IVY_ROOT = re.compile(r'root="([^"]+)"')


class SparkStartError(RuntimeError):
    """The JVM behind the SparkSession did not start; the message names the cause and the log."""


@dataclass(frozen=True)
class SparkProfile:
    """A conf/spark/*.yaml profile: the master (None under spark-submit), its confs, and
    whether the engine runs on GPUs there (then a GPU resource is required)."""

    master: str | None = None
    conf: dict[str, str] = field(default_factory=dict)
    gpu: bool = False


def load_profile(path: str | Path | None) -> SparkProfile:
    """The profile at ``path`` (an empty one for None)."""
    if path is None:
        return SparkProfile()
    try:
        raw = yaml.safe_load(project_file(str(path)).read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"spark.profile: cannot read {path}: {err}") from err
    unknown = set(raw) - {"master", "conf", "gpu"}
    if unknown:
        raise ConfigError(f"spark.profile {path}: unknown keys {sorted(unknown)}")
    if not isinstance(raw.get("gpu", False), bool):
        raise ConfigError(f"spark.profile {path}: gpu must be true or false")
    confs = {str(k): str(v) for k, v in (raw.get("conf") or {}).items()}
    return SparkProfile(raw.get("master"), confs, raw.get("gpu", False))


def delta_package() -> str:
    """Maven coordinate of the Delta jar matching the installed pyspark and delta-spark."""
    from importlib.metadata import version

    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"


def delta_resolution_confs(settings: SparkSettings) -> dict[str, str]:
    """The confs that make Spark resolve Delta from Maven Central only, into the project's Ivy
    home, without the jars Spark ships itself; none when Delta is provided by the platform."""
    if settings.delta_jars == "provided":
        return {}
    confs = {
        PACKAGES_CONF: delta_package(),
        EXCLUDES_CONF: ",".join(SPARK_SHIPPED_DEPENDENCIES),
        "spark.jars.ivy": str(Path(settings.ivy_home).resolve()),
    }
    if settings.ivy_settings is not None:
        ivy_settings = project_file(settings.ivy_settings)
        if not ivy_settings.is_file():
            raise ConfigError(f"spark.ivy_settings: no Ivy settings file at {ivy_settings}")
        confs["spark.jars.ivySettings"] = str(ivy_settings)
    return confs


def spark_confs(settings: SparkSettings) -> tuple[str | None, dict[str, str]]:
    """The master and the full conf map the session is built with: Delta's SQL confs, jar
    resolution, the profile, then the config's own overrides (later wins)."""
    profile = load_profile(settings.profile)
    confs = {**DELTA_CONFS, **delta_resolution_confs(settings), **profile.conf, **settings.conf}
    return settings.master or profile.master, confs


def check_session_gpus(spark: SparkSession, settings: SparkSettings) -> None:
    """Refuse a session whose GPU settings would make tasks share a GPU, or that declares no
    GPU resource under a GPU profile; before any engine is built (``jobs.cluster.gpu_layout``).
    Reads the effective conf: under spark-submit it is the command line's, not the profile's.

    Raises:
        ConfigError: names the settings to fix.
    """
    confs = dict(spark.sparkContext.getConf().getAll())
    check_gpu_layout(confs, load_profile(settings.profile).gpu)


def build_spark(settings: SparkSettings, log_file: str | Path | None = None) -> SparkSession:
    """Get or create the session. Under spark-submit (or in a notebook) the existing master and
    jars win; locally the profile's master is used.

    Args:
        settings: the config's Spark section.
        log_file: where a JVM started here writes its output (Ivy's report, Spark's log, the
            Python workers' output); None leaves it on this process's stdout/stderr.

    Raises:
        SparkStartError: the JVM did not start; one line naming the cause.
    """
    from pyspark.sql import SparkSession

    master, confs = spark_confs(settings)
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    effective = confs
    if under_submit:
        # spark-submit's own --conf options win: one added after submit-args' must not be undone
        # by setting the config's value again on the builder (which would override it).
        launched = launch_confs()
        confs = {k: v for k, v in confs.items() if k not in launched}
        effective = {**confs, **launched}
    # In a second: before a JVM starts, or under spark-submit before the SparkContext (and any
    # executor) exists.
    check_gpu_layout(effective, load_profile(settings.profile).gpu)
    # Executors must run this very interpreter (the project's virtualenv), locally at least.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(settings.app_name)
    if master and not under_submit:
        builder = builder.master(master)
    for key, value in confs.items():
        builder = builder.config(key, value)
    try:
        with _jvm_output_to(log_file):
            spark = builder.getOrCreate()
    except Exception as err:  # noqa: BLE001 - any start failure becomes one readable line
        if SparkSession.getActiveSession() is not None:
            raise
        raise SparkStartError(explain_start_failure(err, log_file, confs)) from err
    spark.sparkContext.setLogLevel("WARN")
    check_session_gpus(spark, settings)
    return spark


def launch_confs() -> dict[str, str]:
    """Under spark-submit, the confs its command line gave the JVM (``--conf``, the properties
    file, ``--master`` ...), read through the running gateway before any SparkContext exists."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connects to spark-submit's JVM; starts nothing
    return dict(SparkConf().getAll())


@contextmanager
def _jvm_output_to(log_file: str | Path | None) -> Iterator[None]:
    """Point this process's stdout and stderr at ``log_file`` while the JVM is launched: the
    JVM, and the Python workers it forks later, inherit them and keep writing there."""
    if log_file is None:
        yield
        return
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    target = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


def explain_start_failure(
    err: BaseException, log_file: str | Path | None, confs: dict[str, str]
) -> str:
    """One line: which artifact Ivy could not get and what to check, or else the JVM's last
    words, and where the whole log is."""
    exists = log_file is not None and Path(log_file).exists()
    text = Path(log_file).read_text(errors="replace") if exists else ""
    where = f"; full log: {log_file}" if log_file else ""
    problems = list(dict.fromkeys(
        template.format(match.group(1))
        for pattern, template in _IVY_PROBLEMS for match in pattern.finditer(text)
    ))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        if "spark.jars.ivySettings" not in confs:
            check = ("Spark's own resolver chain looks in ~/.m2 first, where a pom without its "
                     "jar breaks it: leave spark.ivy_settings at its default")
        else:
            check = (f"Check that {_repository(confs)} is reachable from this machine (or set "
                     "spark.jars.repositories to a mirror)")
        return (
            f"Spark could not resolve {confs.get(PACKAGES_CONF, 'its packages')}: "
            f"{problems[0]}{more}. {check}; where Delta is on the classpath already, set "
            f"spark.delta_jars=provided{where}"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = str(err).splitlines()[0] if str(err) else ""
    last = lines[-1] if lines else f"{type(err).__name__}: {first}"
    return f"Spark did not start: {last}{where}"


def _repository(confs: dict[str, str]) -> str:
    settings = confs.get("spark.jars.ivySettings")
    if settings and Path(settings).is_file():
        found = _IVY_ROOT.search(Path(settings).read_text(errors="replace"))
        if found:
            return found.group(1)
    return "Maven Central"


def submit_args(settings: SparkSettings, python: str = sys.executable) -> list[str]:
    """``spark-submit`` options equivalent to ``build_spark(settings)``: under spark-submit the
    JVM starts before our code runs, so static confs (Delta's extensions, executor env) and the
    Delta package must be given on the command line. Values are not shell-quoted: meant for
    ``spark-submit $(candid submit-args ...)`` with confs that contain no spaces.

    Which Python the workers run (``spark.pyspark.python``) follows from where they run: with
    ``settings.archive`` the packed environment that --archives unpacks in each container as
    ./environment; with a local master this machine's ``python``; otherwise nothing, and the
    nodes' own Python (with the wheel installed) runs them. ``python`` is named only for
    processes on this machine: the workers of a local master, the driver in client mode.
    """
    master, confs = spark_confs(settings)
    check_gpu_layout(confs, load_profile(settings.profile).gpu)
    args = ["--master", master] if master else []
    if settings.deploy_mode == "cluster":
        args += ["--deploy-mode", "cluster"]
    packages = confs.pop(PACKAGES_CONF, None)
    if packages:
        args += ["--packages", packages]
    if settings.archive:
        args += ["--archives", f"{_archive_uri(settings.archive)}#{ARCHIVE_NAME}"]
        confs[PYTHON_CONF] = f"./{ARCHIVE_NAME}/bin/python"
        if settings.deploy_mode == "client":
            confs[DRIVER_PYTHON_CONF] = python
    elif master is not None and master.startswith("local"):
        confs[PYTHON_CONF] = python
    for key, value in confs.items():
        args += ["--conf", f"{key}={value}"]
    return args


def _archive_uri(archive: str) -> str:
    """A local archive as an absolute path (spark-submit uploads it); URIs as given."""
    if "://" in archive:
        return archive
    path = Path(archive).resolve()
    if not path.is_file():
        raise ConfigError(f"spark.archive: no file at {path} (build it with `make dist`)")
    return str(path)
