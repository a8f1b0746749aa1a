"""A describe driver killed mid-run, and a Spark task that fails after producing output: the
results stay exactly-once (real Spark, real Delta, the CLI in subprocesses, fake engines)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from jobs.cli import main as candid_main
from jobs.config import DescribeConfig, IngestConfig, load_config
from jobs.demo.run import make_sample_images
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from jobs.tables.results import RESULT_KEYS
from tests.command_logs import command_log, failure_report
from tests.resilience_fakes import (
    engine_for_config,
    engine_model,
    merge_committed,
    run_candid,
    session_processes,
    start_candid,
    write_job_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.spark]
IMAGES = 30


def _prepare(spark, tmp_path: Path, count: int, seed: int, **overrides) -> tuple[Path, DescribeConfig]:
    make_sample_images(tmp_path / "img", count=count, seed=seed)
    config_file = write_job_config(tmp_path, **overrides)
    config = load_config(DescribeConfig, config_file)
    run_ingest(IngestConfig(source=str(tmp_path / "img"), table=config.input_table), spark)
    return config_file, config


def _kill_after_first_merge(proc: subprocess.Popen, table: Path, log: Path) -> None:
    deadline = time.monotonic() + 400
    while not merge_committed(table):
        if proc.poll() is not None:
            pytest.fail(f"describe ended (rc {proc.returncode}) before a MERGE:\n"
                        + log.read_text()[-3000:])
        if time.monotonic() > deadline:
            pytest.fail("no MERGE commit within 400 s:\n" + log.read_text()[-3000:])
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)


def _stragglers(session_id: int, wait_s: float = 15.0) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + wait_s
    while (left := session_processes(session_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _kill_during_overlap(proc: subprocess.Popen, log: Path) -> int:
    """Kill the run the moment its own log shows a chunk whose engine stage has started and is
    not staged yet while an earlier chunk has merged; returns that running chunk.

    With two engine stages ahead, chunk k + 2 starts only after chunk k has committed, so the
    moment always comes (chunk 2's whole engine stage), whichever of chunks 0 and 1 stages
    first on a loaded machine."""
    deadline = time.monotonic() + 400
    while True:
        text = command_log(log.read_text(errors="replace"))
        merged = [int(k) for k in re.findall(r"chunk (\d+): merged", text)]
        started = [int(k) for k in re.findall(r"chunk (\d+): engine stage started", text)]
        running = [m for m in started if f"chunk {m}: staged" not in text
                   and any(k < m for k in merged)]
        if running:
            os.killpg(proc.pid, signal.SIGKILL)
            return running[0]
        if proc.poll() is not None:
            pytest.fail(f"describe ended (rc {proc.returncode}) without an overlap:\n"
                        + text[-3000:])
        if time.monotonic() > deadline:
            pytest.fail("no overlap within 400 s:\n" + text[-3000:])
        time.sleep(0.05)


def _killed(args: list[str], log: Path, kill) -> tuple[subprocess.Popen, object]:
    """Start ``candid ARGS``, let ``kill(proc)`` kill it, and check nothing outlives it."""
    proc = start_candid(args, log)
    try:
        outcome = kill(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    # The JVM, the pyspark daemon (its own process group) and its workers all go with it.
    assert _stragglers(proc.pid) == []
    return proc, outcome


def _committed(spark, config: DescribeConfig) -> dict[str, tuple]:
    return {
        r.image_id: (r.run_id, r.written_at)
        for r in read_table(spark, config.results_table).collect()
    }


def _rerun_here(args: list[str], config_file: Path, capsys) -> str:
    """``candid ARGS`` again, in this test process and its Spark session (the killed run needed
    a process of its own; its rerun does not). Returns its stdout."""
    capsys.readouterr()
    code = candid_main(args, make_engine=engine_for_config(config_file))
    out, err = capsys.readouterr()
    assert code == 0, failure_report(out, err)
    return out


def _resumes_exactly_once(spark, config: DescribeConfig, rerun_stdout: str, before: dict) -> None:
    """After a kill and a rerun (``rerun_stdout``): every image ends with one ok row, committed
    rows were not recomputed, and the rerun described only what had no result."""
    assert 0 < len(before) < IMAGES, "the kill must land between the first and the last chunk"
    killed_run_ids = {run_id for run_id, _ in before.values()}
    assert len(killed_run_ids) == 1

    processed = int(re.search(r"processed now (\d+)", rerun_stdout).group(1))

    results = read_table(spark, config.results_table)
    final = {r.image_id: r for r in results.collect()}
    assert len(final) == results.count() == IMAGES
    assert results.select(*RESULT_KEYS).distinct().count() == IMAGES
    input_ids = {r.image_id for r in read_table(spark, config.input_table).collect()}
    assert set(final) == input_ids and {r.status for r in final.values()} == {"ok"}
    # Committed rows were not recomputed: same run, same write time.
    assert {k: (final[k].run_id, final[k].written_at) for k in before} == before
    # The rerun described only what had no result yet (plus nothing else). Rows a staged-but-
    # unmerged chunk held are recovered under the killed run's id, not recomputed.
    from_killed_run = sum(1 for r in final.values() if r.run_id in killed_run_ids)
    from_rerun = [r for r in final.values() if r.run_id not in killed_run_ids]
    assert processed == len(from_rerun) == IMAGES - from_killed_run
    assert len({r.run_id for r in from_rerun}) == 1
    recovered = re.search(r"recovered (\d+) staged rows", rerun_stdout)
    assert from_killed_run - len(before) <= (int(recovered.group(1)) if recovered else 0)


def test_killed_run_resumes_without_recomputing_committed_chunks(spark, tmp_path, capsys):
    release = tmp_path / "release"
    config_file, config = _prepare(
        spark, tmp_path, IMAGES, seed=21, chunk_size=6, batch_size=2,
        # After the first chunk's MERGE the engine waits (for the release, which comes only
        # after the kill): the kill lands between the first and the last chunk by design.
        engine__model=engine_model(hold_after_merge=tmp_path / "results", release=release),
    )
    args = ["describe", "--config", str(config_file)]
    log = tmp_path / "killed.log"
    _killed(args, log, lambda proc: _kill_after_first_merge(proc, Path(config.results_table), log))
    before = _committed(spark, config)
    release.touch()  # the rerun's engines run freely (the same config: the same fingerprint)
    _resumes_exactly_once(spark, config, _rerun_here(args, config_file, capsys), before)


def test_run_killed_while_the_next_chunk_runs_beside_a_commit_resumes_exactly_once(
    spark, tmp_path, capsys
):
    """The pipelined case: an earlier chunk has merged (its staged partition and write-back may
    still be pending) while a later chunk's engine stage runs; kill -9 exactly then."""
    release = tmp_path / "release"
    config_file, config = _prepare(
        spark, tmp_path, IMAGES, seed=23, chunk_size=10, batch_size=2,
        source_column__enabled=True, source_column__every_chunk="always",
        # 3 s per engine call: a chunk's engine stage (3 calls per slot) lasts about 9 s, the
        # window in which the kill must land. The release (after the kill) ends the sleeps.
        engine__model=engine_model(sleep=3.0, release=release),
    )
    args = ["describe", "--config", str(config_file)]
    log = tmp_path / "killed.log"
    _, chunk = _killed(args, log, lambda proc: _kill_during_overlap(proc, log))
    # The run's own log, read again after the kill: the running chunk had not finished staging,
    # an earlier one had merged, and neither it nor a later one had merged.
    text = command_log(log.read_text(errors="replace"))
    merged = {int(k) for k in re.findall(r"chunk (\d+): merged", text)}
    assert f"chunk {chunk}: engine stage started" in text
    assert f"chunk {chunk}: staged" not in text
    assert min(merged) < chunk and max(merged) < chunk
    before = _committed(spark, config)
    release.touch()
    _resumes_exactly_once(spark, config, _rerun_here(args, config_file, capsys), before)
    # The rerun wrote every description back onto the input table, once per image.
    written = read_table(spark, config.input_table).where("description_v2 IS NOT NULL")
    assert written.count() == IMAGES


def test_a_task_failing_after_its_first_batch_is_retried_without_duplicates(spark, tmp_path):
    """``local[2,3]``: up to 3 attempts per task. One task dies after it has already handed
    Spark a batch of results; the retried attempt must not leave that batch twice."""
    markers = tmp_path / "markers"
    markers.mkdir()
    config_file, config = _prepare(
        spark, tmp_path, 12, seed=22, batch_size=2, partitions=2,
        engine_factory="tests.resilience_fakes:make_fails_task_once_engine",
        engine__model=engine_model(markers=markers),
        # The fake is fed batch-wise, max_num_seqs requests per generate call: 2 per call makes
        # each task's engine call generate three times, so it dies after its first batch.
        engine__vllm__max_num_seqs=2,
    )
    done = run_candid(["describe", "--config", str(config_file), "--set", "spark.master=local[2,3]"])
    assert done.returncode == 0, failure_report(done.stdout, done.stderr)
    # The failure really happened, after a first batch, and failed the task attempt (Spark
    # reports the failed attempt in the run's log, not on the console).
    assert (markers / "first").exists() and (markers / "second").exists()
    assert "engine failed fatally twice" in command_log(done.stdout)
    assert "engine failed fatally twice" not in done.stdout + done.stderr
    assert "statuses: ok=12" in done.stdout

    results = read_table(spark, config.results_table)
    ids = [r.image_id for r in results.collect()]
    input_ids = {r.image_id for r in read_table(spark, config.input_table).collect()}
    assert len(ids) == 12 and set(ids) == input_ids
    assert results.select(*RESULT_KEYS).distinct().count() == 12
