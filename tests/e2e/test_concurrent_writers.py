"""Several describe runs at once on one results table (three real Spark drivers: two ``candid``
subprocesses and this test's own session, real Delta, a fake engine): Delta's optimistic
concurrency plus ``jobs.tables.results``' retries must keep exactly one row per (image, prompt
version, model) and lose no run's rows, whether or not the runs happened to collide this time.
The third driver is this process's warm session rather than a third subprocess: a third JVM
starting beside the other two cost about a minute of the two cores, and proved nothing more.

That a conflict is really retried is proven deterministically elsewhere, each with a conflicting
commit forced between a writer's read and its commit on a real Delta table:
``tests/spark/test_resilience.py::test_a_real_delta_write_conflict_is_retried`` (a MERGE),
``::test_a_table_another_run_is_still_creating_is_waited_for`` (two creators) and
``tests/spark/test_write_back.py::test_an_owner_appending_during_the_write_back_does_not_fail_the_run``
(the write-back)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobs.config import DescribeConfig, IngestConfig, load_config
from jobs.demo.run import make_sample_images
from jobs.describe.run import run_describe
from jobs.tables.delta_io import ConcurrentWriteError, read_table
from jobs.tables.ingest import run_ingest
from jobs.tables.results import RESULT_KEYS
from tests.command_logs import command_log, failure_report
from tests.resilience_fakes import (
    engine_for_config,
    engine_model,
    run_candid,
    start_candid,
    wait_for_all,
    write_job_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.spark]
# The smallest input that still shows every row once per version: two batches per run, so the
# engine's outputs of one run are merged together, and each run is one chunk (one MERGE and one
# write-back per run; a second chunk only repeated the same commits at ~35 s of CPU each).
IMAGES = 4
# Two runs of the same prompt version describe the same keys and MERGE them into the same
# table, and both add the same column to the input table; a run of another version writes
# other keys into the same buckets (the same files) and adds another column at the same time.
RUNS = {"a": "v2", "b": "v2", "c": "v1"}
IN_PROCESS = "c"  # run by this test's session while "a" and "b" run as subprocesses
CONFLICT_GAVE_UP = "another writer changed the table"


# The runs themselves are killed after 420 s (with their logs in the failure message).
@pytest.mark.timeout(540)
def test_concurrent_runs_of_one_and_of_two_versions_keep_every_row_once(spark, tmp_path, caplog):
    make_sample_images(tmp_path / "img", count=IMAGES, seed=31)
    barrier = tmp_path / "barrier"
    configs = {
        name: write_job_config(
            tmp_path, name=f"{name}.yaml", prompt__version=version, chunk_size=IMAGES,
            batch_size=2, partitions=1,  # one chunk per run; one Python worker per driver
            # Each run's engines wait until every run has reached its engine, so the runs'
            # chunks (and their MERGEs) overlap; model_id keeps the keys equal across runs.
            engine__model=engine_model(barrier=barrier, parties=len(RUNS), name=name, sleep=0.2),
            # Each run also writes its version's column back: all evolve the input table's
            # schema (adding description_v1 and description_v2) at the same time.
            source_column__enabled=True,
        )
        for name, version in RUNS.items()
    }
    config = load_config(DescribeConfig, configs["a"])
    run_ingest(IngestConfig(source=str(tmp_path / "img"), table=config.input_table), spark)
    # The results table does not exist yet: the runs also race to create it.
    subprocess_runs = [name for name in RUNS if name != IN_PROCESS]
    procs = {
        name: start_candid(["describe", "--config", str(configs[name])], tmp_path / f"{name}.log")
        for name in subprocess_runs
    }
    log_paths = {name: tmp_path / f"{name}.log" for name in subprocess_runs}
    # Meanwhile this driver runs its own version; its engine waits at the same barrier.
    try:
        with caplog.at_level("WARNING", logger="candid.delta"):
            in_process = _describe_in_process(configs[IN_PROCESS], spark)
    finally:  # the subprocesses end (or are killed) whatever this run did
        wait_for_all(procs, log_paths, timeout=420)
    # What each run printed, and its run log (the retries are logged there, not printed).
    logs = {name: path.read_text() + command_log(path.read_text()) for name, path in log_paths.items()}
    logs[IN_PROCESS] = caplog.text

    assert {p.name for p in barrier.iterdir()} == set(RUNS)  # every run reached its engine
    # Whether the runs collided depends on timing: reported, not asserted (see the docstring).
    retried = sum(len(re.findall(r"concurrent write conflict, retry", log)) for log in logs.values())
    outcome = {name: proc.returncode for name, proc in procs.items()}
    print(f"exit codes {outcome}, in process: {in_process}; conflict retries: {retried}")
    for name, proc in procs.items():
        if proc.returncode != 0:
            # Allowed only as a clear conflict report after all retries; a rerun finishes it.
            assert CONFLICT_GAVE_UP in logs[name], logs[name][-4000:]
            assert "rerun the job to continue" in logs[name]
            rerun = run_candid(["describe", "--config", str(configs[name])])
            assert rerun.returncode == 0, failure_report(rerun.stdout, rerun.stderr)
    if in_process != "ok":
        assert _describe_in_process(configs[IN_PROCESS], spark) == "ok"

    results = read_table(spark, config.results_table)
    assert results.count() == results.select(*RESULT_KEYS).distinct().count()
    per_version = {r["prompt_version"]: r["count"] for r in results.groupBy("prompt_version").count().collect()}
    assert per_version == {"v1": IMAGES, "v2": IMAGES}
    rows = results.collect()
    assert {r.status for r in rows} == {"ok"}
    # No run's rows lost: every input image has its row under each version.
    images = {r.image_id for r in read_table(spark, config.input_table).collect()}
    assert len(images) == IMAGES
    for version in ("v1", "v2"):
        assert {r.image_id for r in rows if r.prompt_version == version} == images
    written_back = read_table(spark, config.input_table)
    for version in set(RUNS.values()):
        assert written_back.where(f"description_{version} IS NULL").count() == 0
    staging = Path(config.results_table + "_staging")
    assert read_table(spark, str(staging)).count() == 0


def _describe_in_process(config_file: Path, spark) -> str:
    """Run ``config_file`` in this test's session: "ok", or the conflict report a run may give
    after all its retries (the same allowance as the subprocesses' exit code; a rerun ends it).
    Any other error fails the test."""
    config = load_config(DescribeConfig, config_file)
    try:
        run_describe(config, spark, make_engine=engine_for_config(config_file))
    except ConcurrentWriteError as err:
        assert CONFLICT_GAVE_UP in str(err) and "rerun the job to continue" in str(err)
        return "gave up after its retries"
    return "ok"
