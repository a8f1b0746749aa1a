"""The cost ledger's figures from engine tasks' records with known times, rows and tokens."""

from __future__ import annotations

import pytest

from jobs.describe.ledger import TaskLedger, merged, tail_seconds
from udfs.runner.feed_stats import ENDED_AT_KEY, ENGINE_KEY, FeedStats, task_record


def _task(engine: str, start: float, end: float, rows: int, tokens: tuple[int, int]) -> dict:
    return {ENGINE_KEY: engine, ENDED_AT_KEY: end, "wall_s": end - start, "rows": rows,
            "prompt_tokens": tokens[0], "completion_tokens": tokens[1]}


def test_chunk_figures_from_two_engines_one_finishing_early():
    ledger = TaskLedger(slots=2)
    ledger.add_tasks([
        _task("a", 100.0, 105.0, 50, (500, 100)), _task("a", 105.0, 110.0, 50, (500, 100)),
        _task("b", 100.0, 108.0, 60, (600, 120)),
    ])
    figures = ledger.metrics(prefix="chunk.")
    # 160 rows over a 10 s span on 2 engines.
    assert figures["chunk.images_per_s_per_engine"] == pytest.approx(8.0)
    assert figures["chunk.gpu_s_per_1000_images"] == pytest.approx(2 * 10 / 160 * 1000)
    assert figures["chunk.tokens_per_s"] == pytest.approx(1920 / 10)
    # Engine b idles from 108 s to 110 s: 2 s of 10 with fewer than both busy.
    assert figures["chunk.tail_share"] == pytest.approx(0.2)
    assert figures["chunk.engines"] == 2.0


def test_a_slot_that_never_ran_a_task_makes_the_whole_span_tail():
    ledger = TaskLedger(slots=3)
    ledger.add_tasks([_task("a", 0.0, 4.0, 10, (1, 1)), _task("b", 0.0, 4.0, 10, (1, 1))])
    assert ledger.metrics()["tail_share"] == pytest.approx(1.0)
    assert ledger.metrics()["gpu_s_per_1000_images"] == pytest.approx(3 * 4 / 20 * 1000)


def test_no_tasks_no_figures():
    assert TaskLedger(slots=2).metrics() == {}


def test_tail_seconds_merges_touching_intervals_and_counts_gaps():
    assert merged([(3.0, 4.0), (0.0, 1.0), (1.0, 2.0)]) == [(0.0, 2.0), (3.0, 4.0)]
    # Engine a: 0-2 and 3-4; engine b: 0-4. Fewer than both busy from 2 to 3.
    assert tail_seconds({"a": [(0.0, 2.0), (3.0, 4.0)], "b": [(0.0, 4.0)]}, 2) == 1.0


def test_a_task_record_names_its_engine_and_end():
    record = task_record(FeedStats(rows=3, wall_s=1.5))
    assert record["rows"] == 3 and record["wall_s"] == 1.5
    host, pid = record[ENGINE_KEY].rsplit(":", 1)
    assert host and int(pid) > 0 and record[ENDED_AT_KEY] > 0
    assert FeedStats.from_dict(record).rows == 3  # the extra keys do not disturb the stats
