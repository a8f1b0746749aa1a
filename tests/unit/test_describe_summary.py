"""A describe run's summary is assembled once, at the end, from what opening found and what each
step returned (``jobs.describe.report.summarize``, called by ``finish_run``); no step writes
into a shared summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jobs.describe.chunks import DescribedChunks
from jobs.describe.dedup import IdenticalReuse
from jobs.describe.ledger import TaskLedger
from jobs.describe.pending import PendingPlan
from jobs.describe.report import StepResults, summarize
from jobs.describe.start import DescribeRun, RunOpening
from jobs.tables.identity import identify_run
from jobs.tables.results import RetryPolicy
from jobs.tracking.runs import RunTracker
from tests.conftest import describe_config
from udfs.outputs.tally import Tally
from udfs.prompts import find_prompt
from udfs.runner.describe import DescribeTask
from udfs.runner.feed_stats import FeedStats

PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "prompts"


def _run(tmp_path: Path) -> DescribeRun:
    config = describe_config(tmp_path, "fake/model")
    prompt = find_prompt(PROMPTS, "v2")
    identity = identify_run(config, prompt)
    task = DescribeTask(engine=identity.engine, prompt=prompt, sampling=identity.sampling,
                        run_id="run-7")
    opening = RunOpening(rows_recovered=2, rows_replaced=5, results_version_before=11,
                         registered_prompt="prompts:/describe/3")
    return DescribeRun(config, prompt, identity.scope, RetryPolicy(("engine_error",), 3), task,
                       RunTracker(config.mlflow), identity.fingerprint, opening)


def _steps() -> StepResults:
    # The steps' DataFrames are not part of the summary: None stands in for them here.
    plan = PendingPlan(input_version=4, results_version=9, pending=None, rows_in=40,
                       rows_pending=30)
    reused = IdenticalReuse(to_describe=None, duplicates=None,
                            copied=Tally({"ok": 3}, {"too_short": 1}))
    described = DescribedChunks(
        rows_to_describe=20, chunks=2,
        tally=Tally({"ok": 17, "decode_error": 2}, {"too_short": 2}),
        engine=FeedStats(wall_s=8.0, busy_s=6.0, rows=19), ledger=TaskLedger(slots=2),
        samples=(),
    )
    return StepResults(plan, reused, described, fanned_out=Tally({"ok": 4, "decode_error": 1}))


def test_the_summary_is_assembled_from_the_steps_returns(tmp_path):
    run = _run(tmp_path)
    summary = summarize(run, _steps(), seconds=9.5, table_tally=Tally({"ok": 60}),
                        vs_plan=["tail_share: 0.10 actual vs 0.20 planned in run p (50%)"])

    # Identity: from the config, the prompt and the run's task.
    assert (summary.run_id, summary.model, summary.prompt) == ("run-7", "test/tiny-qwen2-vl",
                                                               "describe/v2")
    assert summary.results_table == str(tmp_path / "results")
    assert summary.input_table == str(tmp_path / "images")
    assert summary.fingerprint == run.fingerprint and len(summary.fingerprint) > 0
    assert summary.prompt_hash == run.prompt.content_hash()
    # Opening.
    assert (summary.rows_recovered, summary.rows_replaced, summary.results_version_before,
            summary.registered_prompt) == (2, 5, 11, "prompts:/describe/3")
    # Plan, reuse + fan-out, chunks.
    assert (summary.input_version, summary.rows_in, summary.rows_pending) == (4, 40, 30)
    assert summary.rows_reused == 3 + 5
    assert (summary.rows_to_describe, summary.rows_processed, summary.chunks) == (20, 19, 2)
    assert summary.tally == Tally({"ok": 24, "decode_error": 3}, {"too_short": 3})
    assert (summary.engine.busy_s, summary.engine.rows) == (6.0, 19)
    # Finish.
    assert summary.seconds == 9.5 and summary.images_per_s == pytest.approx(19 / 9.5)
    assert summary.table_tally == Tally({"ok": 60})
    assert summary.vs_plan == ["tail_share: 0.10 actual vs 0.20 planned in run p (50%)"]
    assert summary.tracking_failures == []


def test_a_summary_cannot_be_written_after_it_is_assembled(tmp_path):
    summary = summarize(_run(tmp_path), _steps(), seconds=1.0, table_tally=Tally(), vs_plan=[])
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.rows_processed = 0  # type: ignore[misc]
