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


def _live(engine: str, in_flight_s: float, kv_s: float | None, preempted: int | None) -> dict:
    stats = FeedStats(rows=10, wall_s=2.0, in_flight_s=in_flight_s, engine_sampled_s=2.0,
                      kv_cache_usage_s=kv_s or 0.0, preemptions=preempted)
    return {**stats.to_dict(), ENGINE_KEY: engine, ENDED_AT_KEY: 1.0}


def test_live_figures_per_engine_for_the_progress_line_and_mlflow():
    from jobs.describe.ledger import engine_note, per_engine_metrics

    records = [_live("node1:11", 16.0, 1.0, 2), _live("node1:22", 6.0, 0.5, 0)]
    assert engine_note(records) == (
        "11: 8.0 in flight, KV cache 50%, 2 preempted; 22: 3.0 in flight, KV cache 25%, "
        "0 preempted")
    metrics = per_engine_metrics(records)
    assert metrics["engine.node1-11.in_flight_mean"] == 8.0
    assert metrics["engine.node1-22.kv_cache_usage_mean"] == 0.25
    assert metrics["engine.node1-11.preemptions"] == 2.0
    assert metrics["engine.node1-22.images_per_s"] == 5.0
    # A batch-wise engine reports no scheduler figures: none are made up.
    plain = {**FeedStats(rows=4, wall_s=1.0).to_dict(), ENGINE_KEY: "h:1", ENDED_AT_KEY: 1.0}
    assert engine_note([plain]) == "1: 0.0 in flight"
    assert set(per_engine_metrics([plain])) == {"engine.h-1.images_per_s",
                                                "engine.h-1.in_flight_mean"}
