"""Resilience of the describe job on real Spark + Delta, with fake engines: poisoned rows, dying
engines, Delta write conflicts, interrupted chunk protocols, MLflow outages, ``candid status``,
and credentials kept out of everything a run leaves behind."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from jobs.cli import main as candid_main
from jobs.config import DescribeConfig, IngestConfig, load_config
from jobs.demo.run import make_sample_images
from jobs.describe import commit as staging_io
from jobs.describe.run import run_describe
from jobs.job_settings import TrackingSettings
from jobs.tables import delta_io
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from jobs.tables.layout import ResultsLayout, results_layout
from jobs.tables.results import RESULT_KEYS, RESULTS_SCHEMA_DDL
from jobs.tracking.redaction import REDACTED, redact
from jobs.tracking.runs import RunTracker
from tests.conftest import describe_config
from tests.fakes import (
    POISON_RGB,
    make_always_dead_engine,
    make_dies_once_engine,
    make_poison_engine,
)
from tests.resilience_fakes import (
    candid_env,
    engine_for_config,
    held_until,
    run_candid,
    write_job_config,
)

pytestmark = pytest.mark.spark


def _images(folder: Path, count: int, seed: int, poisoned: int = 0) -> list[Path]:
    """``count`` sample images plus ``poisoned`` whole-magenta PNGs (each a different size, so
    no two share their bytes); returns the poisoned."""
    make_sample_images(folder, count=count, seed=seed)
    bad = []
    for index in range(poisoned):
        path = folder / f"poison_{index}.png"
        Image.new("RGB", (96 + 8 * index, 80), POISON_RGB).save(path)
        bad.append(path.resolve())
    return bad


def _ingest(spark, config: DescribeConfig, folder: Path) -> None:
    run_ingest(IngestConfig(source=str(folder), table=config.input_table), spark)


def _key_count(spark, table: str) -> tuple[int, int]:
    rows = read_table(spark, table)
    return rows.count(), rows.select(*RESULT_KEYS).distinct().count()


def test_poisoned_images_fail_alone_with_their_path(spark, tmp_path):
    poisoned = _images(tmp_path / "img", count=8, seed=11, poisoned=2)
    config = describe_config(
        tmp_path, "poison", batch_size=4, mlflow__enabled=False,
    )
    _ingest(spark, config, tmp_path / "img")
    summary = run_describe(config, spark, make_engine=make_poison_engine)
    rows = read_table(spark, config.results_table).collect()
    assert summary.rows_in == len(rows) == 10 and summary.rows_processed == 10
    failed = {r.path: r for r in rows if r.status != "ok"}
    assert set(failed) == {str(p) for p in poisoned}
    for path, row in failed.items():
        assert row.status == "engine_error"
        assert row.status_message.startswith(f"{path}: ValueError: poisoned image in batch")
        assert row.description is None
    # Bisection kept every healthy image that shared a batch with a poisoned one.
    assert summary.tally.statuses == {"ok": 8, "engine_error": 2}
    assert all(r.description.startswith("fake ") for r in rows if r.status == "ok")


def test_an_engine_that_dies_once_is_rebuilt_and_every_row_is_ok(spark, tmp_path):
    _images(tmp_path / "img", count=6, seed=12)
    marker = tmp_path / "died"
    config = describe_config(
        tmp_path, str(marker), engine__model_id="fake/dies-once", partitions=1,
        mlflow__enabled=False,
    )
    _ingest(spark, config, tmp_path / "img")
    summary = run_describe(config, spark, make_engine=make_dies_once_engine)
    assert marker.read_text() == "died once\n"  # it did die
    rows = read_table(spark, config.results_table).collect()
    assert summary.tally.statuses == {"ok": 6} and len(rows) == 6
    # One task on one worker: every row came from the single rebuilt engine.
    assert len({r.description.split(" by ")[1] for r in rows}) == 1


def test_an_engine_that_stays_dead_fails_the_job_and_writes_nothing(spark, tmp_path):
    _images(tmp_path / "img", count=4, seed=13)
    config = describe_config(
        tmp_path, "dead", partitions=1, mlflow__enabled=False,
    )
    _ingest(spark, config, tmp_path / "img")
    with pytest.raises(Exception, match="engine failed fatally twice") as failure:
        run_describe(config, spark, make_engine=make_always_dead_engine)
    assert "fake engine is dead" in str(failure.value)
    assert read_table(spark, config.results_table).count() == 0
    staging = staging_io.staging_table_for(config.results_table)
    assert read_table(spark, staging).count() == 0


def _results_frame(
    spark, run_id: str, ids: range, written_at: str = "2026-01-01 00:00:00",
    model: str = "fake/protocol",
):
    """ok result rows of ``run_id`` with image ids ``str(i) for i in ids``, results schema."""
    from datetime import datetime

    from pyspark.sql.types import StructType

    schema = StructType.fromDDL(RESULTS_SCHEMA_DDL)
    values = {
        "prompt_name": "describe", "prompt_version": "v2", "model": model,
        "status": "ok", "run_id": run_id, "written_at": datetime.fromisoformat(written_at),
    }
    rows = [
        tuple(str(i) if f.name == "image_id" else values.get(f.name) for f in schema.fields)
        for i in ids
    ]
    return spark.createDataFrame(rows, schema)


def test_a_real_delta_write_conflict_is_retried(spark, tmp_path, caplog, monkeypatch):
    """A MERGE whose table gains a file while it runs fails with Delta's
    ConcurrentAppendException; ``merge_staged`` must retry it, not give up."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    table = str(tmp_path / "results")
    staging_io.ensure_tables(spark, table)
    layout = results_layout(spark, table)
    # merge_staged looks up the staged rows' buckets before its MERGE: answered here from the
    # same ids without the held UDF, so that the UDF (and the append) run inside the MERGE.
    present = layout.buckets_in(layout.with_bucket(_results_frame(spark, "run-a", range(3))))
    monkeypatch.setattr(ResultsLayout, "buckets_in", lambda self, rows: present)
    started, appended = tmp_path / "merge-started", tmp_path / "appended"

    # Runs in the Python worker while the MERGE executes (its snapshot is taken).
    slow = F.udf(held_until(started, appended), StringType())
    # One task holds one of local[2]'s two slots: the other stays free for the append.
    staged = _results_frame(spark, "run-a", range(3)).coalesce(1).withColumn(
        "image_id", slow("image_id")
    )

    def append_meanwhile() -> None:
        deadline = time.monotonic() + 120
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        other = spark.newSession()  # its own session confs: no txnAppId of the MERGE
        # Another model's row of image 0: the same bucket, one the MERGE reads (an append to
        # a bucket outside the MERGE's ``bucket IN (...)`` would not conflict at all).
        row = _results_frame(other, "run-b", range(1), model="fake/other")
        try:
            layout.with_bucket(row).write.format("delta").mode("append").save(table)
        finally:  # a failed append must not hold the MERGE for a minute per row
            appended.touch()

    writer = threading.Thread(target=append_meanwhile)
    writer.start()
    with caplog.at_level("WARNING", logger="candid.delta"):
        staging_io.merge_staged(spark, table, staged, "run-a", 0)
    writer.join()
    assert "concurrent write conflict, retry 1" in caplog.text
    rows = sorted((r.image_id, r.model) for r in read_table(spark, table).collect())
    assert rows == [("0", "fake/other"), ("0", "fake/protocol"), ("1", "fake/protocol"),
                    ("2", "fake/protocol")]


class _LoggedEvent(logging.Handler):
    """A ``threading.Event`` set when a log record containing ``text`` is emitted: orders a
    helper thread after a step of the code under test, without guessing how long it takes."""

    def __init__(self, text: str):
        super().__init__(level=logging.WARNING)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()

    def set(self) -> None:
        self.event.set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)


def test_a_table_another_run_is_still_creating_is_waited_for(spark, tmp_path, caplog):
    """Between a creator's mkdir of ``_delta_log/`` and its first commit, Delta answers
    DELTA_TABLE_NOT_FOUND to a second creator (two runs starting at once on a new results
    table). ``ensure_tables`` must wait for the winner instead of failing."""
    table = tmp_path / "results"
    (table / "_delta_log").mkdir(parents=True)  # the winner's state just before its commit
    first_retry = _LoggedEvent("concurrent write conflict, retry 1")

    def winner_commits() -> None:
        # Only once our first attempt has met the empty folder (and is waiting to retry).
        if first_retry.wait(timeout=120):
            (table / "_delta_log").rmdir()
            staging_io.ensure_tables(spark.newSession(), str(table))

    winner = threading.Thread(target=winner_commits)
    delta_log = logging.getLogger("candid.delta")
    delta_log.addHandler(first_retry)
    winner.start()
    try:
        with caplog.at_level("WARNING", logger="candid.delta"):
            staging = staging_io.ensure_tables(spark, str(table), attempts=8, base_delay_s=0.25)
    finally:
        first_retry.set()  # a failed first attempt must not leave the winner waiting
        delta_log.removeHandler(first_retry)
        winner.join()
    assert f"create {table}: concurrent write conflict, retry 1" in caplog.text
    # The results table adds its partition column (bucket), the staging table its chunk.
    assert read_table(spark, str(table)).columns[:-1] == read_table(spark, staging).columns[:-1]


def test_a_table_whose_creator_died_before_committing_gets_a_clear_error(spark, tmp_path):
    table = tmp_path / "results"
    (table / "_delta_log").mkdir(parents=True)
    no_commit = "_delta_log folder exists but holds no commit"
    with pytest.raises(delta_io.ConcurrentWriteError, match=no_commit):
        staging_io.ensure_tables(spark, str(table), attempts=2, base_delay_s=0.05)


def test_a_folder_of_other_files_is_not_mistaken_for_a_table_being_created(
    spark, tmp_path, caplog
):
    table = tmp_path / "results"
    table.mkdir()
    (table / "part-0.parquet").write_bytes(b"not ours")
    with (
        caplog.at_level("WARNING", logger="candid.delta"),
        pytest.raises(Exception, match="DELTA_MISSING_DELTA_TABLE|not a Delta table"),
    ):
        staging_io.ensure_tables(spark, str(table), attempts=6, base_delay_s=5.0)
    assert "retry" not in caplog.text  # failed at once


def test_interrupted_chunk_protocol_is_recovered_exactly_once(spark, tmp_path):
    """A crash after staging (before the MERGE) loses no rows, whatever the order of the
    leftovers; a crash after the MERGE (before the staged partition is dropped) changes nothing
    when the leftover is merged again."""
    table = str(tmp_path / "results")
    staging = staging_io.ensure_tables(spark, table)

    def stage(run_id: str, chunk: int, ids: range) -> None:
        # Each staging stamps its rows with its own, later, written_at.
        staging_io.stage_chunk(_results_frame(spark, run_id, ids).drop("written_at"), staging,
                               run_id, chunk)

    def merge(run_id: str, chunk: int) -> None:
        staged = staging_io.read_staged(spark, staging, run_id, chunk)
        staging_io.merge_staged(spark, table, staged, run_id, chunk)

    # Run A: chunk 3 merged but not dropped; chunk 1 (a lower number) and chunk -2 staged and
    # never merged, as a crash or out-of-order copies (jobs.describe.dedup) would leave them.
    stage("run-a", 3, range(0, 2))
    merge("run-a", 3)
    stage("run-a", 1, range(2, 5))
    stage("run-a", -2, range(5, 6))
    # The staged copy of chunk 3 is rewritten with a later timestamp (a retried task's output):
    # merging it again must not replace the committed rows.
    stage("run-a", 3, range(0, 2))
    before = {r.image_id: r.written_at for r in read_table(spark, table).collect()}
    version_before = delta_io.delta_table(spark, table).history(1).first()["version"]

    recovered = staging_io.recover_staged(spark, table)

    assert recovered == 2 + 3 + 1
    after = {r.image_id: r.written_at for r in read_table(spark, table).collect()}
    assert {k: after[k] for k in before} == before  # the txn skipped the repeated MERGE
    assert sorted(after) == [str(i) for i in range(6)] and _key_count(spark, table) == (6, 6)
    assert read_table(spark, staging).count() == 0
    # Two new MERGEs (chunks 1 and -2); chunk 3's repeated MERGE was skipped by its txn id.
    merges = (
        delta_io.delta_table(spark, table).history()
        .where(f"version > {version_before} AND operation = 'MERGE'").count()
    )
    assert merges == 2
    assert staging_io.recover_staged(spark, table) == 0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_down(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    return f"http://127.0.0.1:{_closed_port()}"


@pytest.mark.parametrize("on_error", ["warn", "fail"])
def test_mlflow_outage_never_loses_results(spark, tmp_path, capsys, mlflow_down, on_error):
    _images(tmp_path / "img", count=5, seed=14)
    config_file = write_job_config(
        tmp_path, spark__conf={}, mlflow__enabled=True, mlflow__tracking_uri=mlflow_down,
        mlflow__on_error=on_error,
    )
    config = load_config(DescribeConfig, config_file)
    _ingest(spark, config, tmp_path / "img")
    started = time.monotonic()
    code = candid_main(
        ["describe", "--config", str(config_file)], make_engine=engine_for_config(config_file)
    )
    out, err = capsys.readouterr()
    assert time.monotonic() - started < 120  # no long hang on the dead server
    rows = read_table(spark, config.results_table).collect()
    assert len(rows) == 5 and {r.status for r in rows} == {"ok"}
    assert all(r.run_id.startswith("local-") for r in rows)
    if on_error == "warn":
        assert code == 0, err
        assert "WARNING: MLflow: could not start run" in out
        assert "statuses: ok=5" in out
    else:
        assert code == 1
        assert "results were written, but MLflow: could not start run" in err


def test_tracking_failures_and_logged_values_carry_no_credentials(mlflow_down, caplog):
    """MLflow's errors quote the tracking URI: a user:password@ in it must not reach the log,
    the CLI's summary or the exit message."""
    secret = "SUPERSECRET-URL-222"
    uri = mlflow_down.replace("http://", f"http://candid:{secret}@")
    tracker = RunTracker(TrackingSettings(tracking_uri=uri, on_error="fail"))
    with caplog.at_level("WARNING", logger="candid.tracking"):
        assert tracker.start("run", tags={}).startswith("local-")
    assert tracker.failures and "!!! MLflow: could not start run" in caplog.text
    with pytest.raises(Exception) as failure:
        tracker.raise_for_failures()
    for text in (*tracker.failures, caplog.text, str(failure.value)):
        assert secret not in text and f"candid:{REDACTED}@" in text
    clean = redact({
        "spark": {"conf": {"fs.s3a.encryption.key": "k1", "spark.ssl.keyPassword": "k2"}},
        "paths": ["https://acct.blob.core.windows.net/c/a.jpg?sv=1&sig=k3", "s3://u:k4@h/x"],
        "batch_size": 8, "max_tokens": 64,
    })
    assert not any(f"k{i}" in str(clean) for i in range(1, 5)), clean
    assert clean["batch_size"] == 8 and clean["max_tokens"] == 64


def _status_lines(text: str) -> dict[str, object]:
    parsed: dict[str, object] = {"final": {}, "retry": {}}
    for line in text.splitlines():
        if m := re.match(r"input\s+\S+: (\d+) rows", line):
            parsed["input"] = int(m.group(1))
        elif m := re.match(r"\s+ok\s+(\d+)$", line):
            parsed["ok"] = int(m.group(1))
        elif m := re.match(r"\s+failed \((final|will retry)\)\s+(\d+)\s+\[(\w+)\]", line):
            parsed["final" if m.group(1) == "final" else "retry"][m.group(3)] = int(m.group(2))
        elif m := re.match(r"\s+pending \(incl\. retries\)\s+(\d+)", line):
            parsed["pending"] = int(m.group(1))
        elif m := re.match(r"\s+staged, not yet merged\s+(\d+)", line):
            parsed["staged"] = int(m.group(1))
    return parsed


def test_status_after_a_partial_run_matches_the_tables(spark, tmp_path, capsys):
    folder = tmp_path / "img"
    _images(folder, count=6, seed=15, poisoned=1)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image at all\n")
    config_file = write_job_config(
        tmp_path, spark__conf={}, engine_factory="tests.fakes:make_poison_engine",
    )
    config = load_config(DescribeConfig, config_file)
    _ingest(spark, config, folder)
    run_describe(config, spark, make_engine=engine_for_config(config_file))
    # New images arrive after the run: they are pending, as is the retryable poisoned row.
    make_sample_images(folder / "later", count=3, seed=16)
    _ingest(spark, config, folder)
    # A crashed run's staged chunk for this prompt and model (2 rows), and one of another model.
    staging = staging_io.staging_table_for(config.results_table)
    for run_id, model, ids in (("crashed", "fake/resilience", range(2)), ("other", "x", range(5))):
        rows = _results_frame(spark, run_id, ids, model=model).drop("written_at")
        staging_io.stage_chunk(rows, staging, run_id, 0)

    assert candid_main(["status", "--config", str(config_file)]) == 0
    status = _status_lines(capsys.readouterr().out)

    counts = {
        r["status"]: r["count"]
        for r in read_table(spark, config.results_table).groupBy("status").count().collect()
    }
    assert counts == {"ok": 6, "engine_error": 1, "empty_file": 1, "not_an_image": 1}
    assert status == {
        "input": 12, "ok": counts["ok"],
        "final": {"empty_file": 1, "not_an_image": 1},
        "retry": {"engine_error": 1},
        "pending": 3 + 1,
        "staged": 2,
    }


SECRETS = {
    "spark": "SUPERSECRET-SPARK-123",
    "azure": "SUPERSECRET-AZ-456",
    "env": "SUPERSECRET-ENV-789",
    "hf": "SUPERSECRET-HF-000",
    "url": "SUPERSECRET-URL-111",
}


@pytest.mark.e2e
def test_no_credential_reaches_mlflow_or_the_output(spark, tmp_path):
    _images(tmp_path / "img", count=3, seed=17)
    config_file = write_job_config(
        tmp_path,
        mlflow__enabled=True,
        **{
            "spark__conf__fs.s3a.secret.key": SECRETS["spark"],
            "spark__conf__spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net":
                SECRETS["azure"],
            "spark__conf__spark.hadoop.fs.s3a.endpoint":
                f"http://candid:{SECRETS['url']}@127.0.0.1:9/",
        },
    )
    config = load_config(DescribeConfig, config_file)
    _ingest(spark, config, tmp_path / "img")
    env = candid_env(AWS_SECRET_ACCESS_KEY=SECRETS["env"], HF_TOKEN=SECRETS["hf"])
    done = run_candid(["describe", "--config", str(config_file)], env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "statuses: ok=3" in done.stdout

    stores = list(tmp_path.glob("mlflow.db*"))  # the sqlite file and any journal beside it
    artifacts = [p for p in (tmp_path / "mlartifacts").rglob("*") if p.is_file()]
    # Non-vacuous: the run was logged, and its config names the secret keys, redacted.
    assert (tmp_path / "mlflow.db").stat().st_size > 0 and len(artifacts) >= 3
    logged_config = next(p for p in artifacts if p.name == "config.yaml").read_text()
    assert "fs.s3a.secret.key" in logged_config and REDACTED in logged_config
    haystacks = {
        "stdout": done.stdout.encode(), "stderr": done.stderr.encode(),
        **{str(p): p.read_bytes() for p in (*stores, *artifacts)},
    }
    leaks = [
        (where, name) for where, blob in haystacks.items()
        for name, secret in SECRETS.items() if secret.encode() in blob
    ]
    assert leaks == []
