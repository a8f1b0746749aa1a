"""Delta's jars resolve the same way whatever the user's ~/.m2 holds (issue: a pom without its
jar there broke every first run). Each test starts a Candid SparkSession in a subprocess whose
Java home holds exactly that state, with an Ivy home of its own, so resolution starts from
nothing as on a new machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

pytestmark = pytest.mark.spark
REPO = Path(__file__).resolve().parents[2]
# A module that Delta's tree needs, in a version Maven itself would consider: its pom in ~/.m2
# without the jar is what `mvn dependency:get` leaves behind. (Delta's storage module: always
# resolved, in Delta's own version; the jars Spark ships are left out of the resolution.)
POISONED = ("io.delta", "delta-storage", version("delta-spark"))

SESSION_SCRIPT = textwrap.dedent("""
    import sys
    from jobs.job_settings import SparkSettings
    from jobs.cluster.spark_session import SparkStartError, build_spark

    ivy_home, log_file, table, own_chain = sys.argv[1:5]
    settings = SparkSettings(
        profile="conf/spark/local.yaml", ivy_home=ivy_home,
        **({} if own_chain == "yes" else {"ivy_settings": None}),
    )
    try:
        spark = build_spark(settings, log_file=log_file)
    except SparkStartError as err:
        print(f"START FAILED: {err}")
        sys.exit(3)
    spark.range(3).write.format("delta").save(table)
    print("delta rows", spark.read.format("delta").load(table).count())
""")


def _home_with_pom_without_jar(home: Path) -> Path:
    group, artifact, version = POISONED
    folder = home / ".m2" / "repository" / Path(*group.split(".")) / artifact / version
    folder.mkdir(parents=True)
    (folder / f"{artifact}-{version}.pom").write_text(textwrap.dedent(f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <project xmlns="http://maven.apache.org/POM/4.0.0">
          <modelVersion>4.0.0</modelVersion>
          <groupId>{group}</groupId>
          <artifactId>{artifact}</artifactId>
          <version>{version}</version>
          <packaging>jar</packaging>
        </project>
    """))
    return home


def _start_session(tmp_path: Path, own_chain: bool) -> tuple[subprocess.CompletedProcess, Path]:
    home = _home_with_pom_without_jar(tmp_path / "home")
    log_file = tmp_path / "spark.log"
    env = {**os.environ, "JAVA_TOOL_OPTIONS": f"-Duser.home={home}"}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    done = subprocess.run(
        [sys.executable, "-c", SESSION_SCRIPT, str(tmp_path / "ivy"), str(log_file),
         str(tmp_path / "table"), "yes" if own_chain else "no"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    return done, log_file


def test_delta_works_with_a_pom_without_its_jar_in_m2(tmp_path):
    done, log_file = _start_session(tmp_path, own_chain=True)
    assert done.returncode == 0, done.stdout + done.stderr + log_file.read_text()[-3000:]
    assert "delta rows 3" in done.stdout
    log = log_file.read_text()
    group, artifact, release = POISONED
    # Resolved from Maven Central into the test's own Ivy home; ~/.m2 never consulted.
    assert f"found {group}#{artifact};{release} in maven-central" in log
    assert "local-m2-cache" not in log
    resolved = sorted(p.name for p in (tmp_path / "ivy" / "jars").iterdir())
    assert f"{group}_{artifact}-{release}.jar" in resolved
    # Nothing that Spark ships itself (an older Hadoop client, Parquet, Jackson) came along.
    import pyspark

    spark_jars = Path(pyspark.__file__).parent / "jars"
    shipped = {_artifact(jar.name) for jar in spark_jars.glob("*.jar")}
    assert "hadoop-client-runtime" in shipped  # the comparison below is not vacuous
    assert [n for n in resolved if _artifact(n.split("_", 1)[1]) in shipped] == []


def _artifact(jar: str) -> str:
    """``hadoop-client-runtime`` for ``hadoop-client-runtime-3.5.0.jar``."""
    return re.sub(r"-\d[\w.-]*\.jar$", "", jar)


def test_sparks_own_chain_fails_there_with_one_line_naming_the_jar(tmp_path):
    # The control: the same home breaks Spark's default chain, so the test above is meaningful,
    # and the failure is one readable line instead of a Java stack trace.
    done, log_file = _start_session(tmp_path, own_chain=False)
    assert done.returncode == 3, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("START FAILED"))
    group, artifact, release = POISONED
    assert f"download failed: {group}#{artifact};{release}!{artifact}.jar" in line
    assert "looks in ~/.m2 first" in line and str(log_file) in line
    assert "Traceback" not in done.stdout + done.stderr
