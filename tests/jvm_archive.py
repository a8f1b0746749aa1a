"""A class-data archive for the JVMs the tests start, and the JVM options that use it.

About 25 JVMs start during ``make test`` besides the test session's own: spark-submit and CLI
drivers, killed and resumed drivers, standalone masters, workers and executors, the demo. Each
lives a minute or two, and most of its CPU goes to loading and verifying some 16,000 Spark
classes and compiling them with both JIT tiers. Two JVM options cut that, without touching any
Spark setting (the JVM runs the same bytecode):

- ``-XX:SharedArchiveFile``: the classes one Spark + Delta describe run loaded, parsed and
  verified once, mapped from ``build/jvm`` (Java's dynamic class-data sharing archive, built by
  ``python -m tests.jvm_archive``, a step of ``make test``). A JVM whose class path does not
  match (Spark's launcher, for one) ignores it silently.
- ``-XX:TieredStopAtLevel=1``: the quick JIT tier only; the optimising tier costs a short JVM
  more CPU than it earns back. The test session's own JVM lives through the whole suite and
  keeps both tiers (``SESSION_JVM_OPTIONS``), with less inlining (below).

Measured: ``pytest tests/e2e/test_spark_submit.py`` took 62.9 s and 58.9 s with both options,
69.2 s with the archive alone, 79.6 s and 86.9 s with neither (interleaved runs, one scratch
clone, the same hour). A small Spark + Delta script (three appends, three merges, a count) took
27.5 s and 26.2 s to start and run with neither, 18.5 s and 15.3 s with both. The whole of
``pytest tests/spark tests/e2e`` took 1,341 s with both (archive built beforehand), against
1,579 s without on the same scratch clone the day before; the modules that start their own
JVMs gained most (cluster 100 s -> 80 s, kill and resume 168 s -> 118 s, demo 107 s -> 75 s).

The session JVM's optimising tier inlines less than by default (``-XX:MaxInlineLevel=4
-XX:InlineSmallCode=500 -XX:FreqInlineSize=150``; Java 17's defaults are 15, 2,500 and 325).
On the tests' tiny tables the session plans and runs many different small queries and few hot
loops, and its optimising compiler took about half of its CPU building deep inlined trees:
72-74 s of C2 compile time (``-XX:+CITime``) in a 125-140 s run of the three modules
below, 28-34 s with these options. Measured: ``pytest tests/spark/test_provenance.py
tests/spark/test_write_back.py tests/spark/test_results_layout.py`` took 193-216 CPU-seconds
(8 runs; wall 125-140 s) with the defaults, 161-180 CPU-seconds (4 runs; wall 119-133 s) with
these options (runs interleaved on one scratch clone, the same hour; CPU-seconds of the whole
machine from ``/proc/stat``). Shallower still (levels 3, 300, 100) gained nothing more (172
and 182); raising the optimising tier's thresholds instead (``Tier4*``) saved less (185 and
199). The whole suite keeps both cores busy, so CPU-seconds, not one process's wall time, is
what its length follows.

Every JVM the tests start, the test sessions' own included, also uses the parallel garbage
collector (``-XX:+UseParallelGC``) instead of G1, whose concurrent marking, refinement threads
and write barriers cost CPU that this 2-core suite needs elsewhere; a test does not mind a
pause. Measured (runs interleaved on one scratch clone, the same hour):
``pytest tests/spark/test_provenance.py tests/spark/test_write_back.py
tests/spark/test_results_layout.py`` (one session JVM) took 150 s / 238 CPU-seconds and
142 s / 221 with G1, 137 s / 211 and 138 s / 216 with the parallel collector there;
``pytest tests/e2e/test_kill_resume.py`` (a session and four drivers) 154 s / 218 with G1,
141 s / 195 with it in every JVM (the serial collector: 145 s / 197).

The options reach every JVM through ``JAVA_TOOL_OPTIONS`` (tests/conftest.py), which CI
already sets for its fresh Java home; tests that set their own (the fresh-Ivy test) run
without them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHIVE_DIR = REPO / "build" / "jvm"
QUIET_CDS = "-Xlog:cds=off -Xlog:cds+dynamic=off"
EVERY_JVM_OPTIONS = "-XX:+UseParallelGC"
SESSION_JVM_OPTIONS = (
    "-XX:TieredStopAtLevel=4 -XX:MaxInlineLevel=4 -XX:InlineSmallCode=500 -XX:FreqInlineSize=150"
)


def _java_binary() -> Path | None:
    """The java that Spark's launcher runs: JAVA_HOME's, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home) / "bin" / "java" if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def archive_path() -> Path | None:
    """Where the archive for this JDK and this Spark's jars lives; None without a java.

    An archive is valid only for the JDK that wrote it and the class path it saw, so both name
    it: a new JDK or Spark gets a new archive instead of a silently ignored old one."""
    import pyspark

    java = _java_binary()
    if java is None:
        return None
    release = java.parents[1] / "release"
    jars = Path(pyspark.__file__).parent / "jars"
    key = hashlib.sha256()
    key.update(str(java).encode())
    key.update(release.read_bytes() if release.exists() else b"")
    key.update("\n".join(sorted(p.name for p in jars.glob("*.jar"))).encode())
    return ARCHIVE_DIR / f"spark-{key.hexdigest()[:16]}.jsa"


def child_java_options() -> str:
    """The options for JVMs the tests start (appended to JAVA_TOOL_OPTIONS): the collector,
    and once the archive is built, the archive and the quick JIT tier."""
    path = archive_path()
    if path is None or not path.exists():
        return EVERY_JVM_OPTIONS
    # Stopping at the quick tier also shrinks the code cache to the one-tier default (48 MiB),
    # which a describe fills ("Out of space in CodeCache for adapters"): keep the tiered size.
    return (f"{EVERY_JVM_OPTIONS} -XX:SharedArchiveFile={path} -XX:TieredStopAtLevel=1 "
            f"-XX:ReservedCodeCacheSize=240m {QUIET_CDS}")


def build_archive(path: Path) -> None:
    """Run one fake-engine describe on local Spark + Delta in a JVM that writes the classes it
    loaded to ``path`` when it exits."""
    from jobs.cluster.spark_session import build_spark
    from jobs.config import IngestConfig
    from jobs.demo.run import make_sample_images
    from jobs.describe.run import run_describe
    from jobs.tables.ingest import run_ingest
    from tests.conftest import describe_config
    from tests.fakes import make_fake_engine
    from udfs.engines.vllm_env import prepare_process_env

    prepare_process_env(str(REPO / "build"))
    scratch = Path(tempfile.mkdtemp(prefix="jvm-archive-"))
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    config = describe_config(scratch, "fake", mlflow__enabled=False)
    spark = build_spark(config.spark.model_copy(update={
        "ivy_home": str(REPO / "build" / "ivy"),
        "conf": {**config.spark.conf,
                 "spark.driver.extraJavaOptions": f"-XX:ArchiveClassesAtExit={partial} {QUIET_CDS}"},
    }), log_file=scratch / "spark.log")
    images = make_sample_images(scratch / "samples", count=4, seed=1)
    run_ingest(IngestConfig(source=str(images.folder), table=config.input_table), spark)
    run_describe(config, spark, make_engine=make_fake_engine)
    spark.stop()
    _wait_for_jvm_exit()
    if not partial.exists():
        raise SystemExit(f"the JVM wrote no class archive; see {scratch / 'spark.log'}")
    partial.replace(path)
    shutil.rmtree(scratch, ignore_errors=True)


def _wait_for_jvm_exit() -> None:
    """The JVM writes the archive as it exits, which it does when its stdin closes."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    process = gateway.proc
    gateway.shutdown()
    process.stdin.close()
    process.wait(timeout=300)


def main() -> int:
    path = archive_path()
    if path is None:
        print("no java found: the tests' JVMs start without a class archive")
        return 0
    if path.exists():
        print(f"class archive up to date: {path}")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob("spark-*.jsa"):  # another JDK's or Spark's, 200 MiB each
        stale.unlink()
    build_archive(path)
    print(f"class archive built: {path} ({path.stat().st_size >> 20} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
