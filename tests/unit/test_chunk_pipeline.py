"""The chunk pipeline's promises, with a recording stand-in for the SparkContext: engine stages
run ahead of the commits by at most ``depth``, in their own pool and job group, commits come in
chunk order, and a failure cancels the engine stages still running."""

from __future__ import annotations

import threading
from contextlib import closing

import pytest

from jobs.describe.pipeline import COMMIT_POOL, ENGINE_POOL, ChunkPipeline


class RecordingContext:
    """What ChunkPipeline calls on a SparkContext, recorded per thread."""

    def __init__(self, mode: str = "FAIR"):
        self.mode = mode
        self.local = threading.local()
        self.cancelled: list[str] = []
        self.cancel_seen = threading.Event()
        self.pools: dict[str, str | None] = {}  # job group -> pool it ran in

    def getConf(self):  # noqa: N802 - SparkContext's name
        return {"spark.scheduler.mode": self.mode}

    def setLocalProperty(self, key, value):  # noqa: N802
        setattr(self.local, key.replace(".", "_"), value)

    def getLocalProperty(self, key):  # noqa: N802
        return getattr(self.local, key.replace(".", "_"), None)

    def setJobGroup(self, group, description):  # noqa: N802
        self.local.group = group
        self.pools[group] = self.getLocalProperty("spark.scheduler.pool")

    def cancelJobGroup(self, group):  # noqa: N802
        self.cancelled.append(group)
        self.cancel_seen.set()


class Session:
    def __init__(self, context):
        self.sparkContext = context


def _pipeline(context, stage, depth):
    return ChunkPipeline(Session(context), "r1", stage, depth=depth, index=lambda c: c)


def test_engine_stages_run_ahead_by_depth_and_commits_come_in_order():
    context = RecordingContext()
    events: list[str] = []
    lock = threading.Lock()

    def stage(chunk: int) -> str:
        with lock:
            events.append(f"start {chunk}")
        return f"staged {chunk}"

    committed = []
    for chunk, staged in _pipeline(context, stage, depth=2).staged(list(range(5))):
        assert context.getLocalProperty("spark.scheduler.pool") == COMMIT_POOL
        assert staged == f"staged {chunk}"
        with lock:
            started = {int(e.split()[1]) for e in events}
            events.append(f"commit {chunk}")
        # While chunk k commits, k + 1 may have started, never k + 2.
        assert chunk + 2 not in started
        committed.append(chunk)
    assert committed == [0, 1, 2, 3, 4]
    # Chunk k + 2 started only after chunk k committed.
    for chunk in range(3):
        assert events.index(f"commit {chunk}") < events.index(f"start {chunk + 2}")
    assert set(context.pools.values()) == {ENGINE_POOL}
    assert sorted(context.pools) == [f"candid-r1-chunk-{c}" for c in range(5)]
    assert context.getLocalProperty("spark.scheduler.pool") is None  # the caller's thread reset


def test_a_committed_chunk_starts_the_stage_depth_chunks_on_before_the_next_is_asked_for():
    context = RecordingContext()
    started = {chunk: threading.Event() for chunk in range(4)}

    def stage(chunk: int) -> int:
        started[chunk].set()
        return chunk

    pipeline = _pipeline(context, stage, depth=2)
    with closing(pipeline.staged(list(range(4)))) as staged:
        for chunk, _ in staged:
            if chunk + 2 < 4:
                assert not started[chunk + 2].is_set()  # not before the commit
            pipeline.committed()  # the commit is done; the write-back would follow
            if chunk + 2 < 4:
                # Started by committed() itself: the generator is still paused at this chunk.
                assert started[chunk + 2].wait(timeout=30), chunk
            pipeline.committed()  # a second call starts nothing more
    assert sorted(context.pools) == [f"candid-r1-chunk-{c}" for c in range(4)]


def test_depth_one_runs_each_engine_stage_after_the_previous_commit():
    context = RecordingContext()
    events: list[str] = []

    def stage(chunk: int) -> int:
        events.append(f"start {chunk}")
        return chunk

    for chunk, _ in _pipeline(context, stage, depth=1).staged([0, 1, 2]):
        events.append(f"commit {chunk}")
    assert events == ["start 0", "commit 0", "start 1", "commit 1", "start 2", "commit 2"]


def test_a_failed_engine_stage_cancels_the_one_running_beside_it():
    context = RecordingContext()
    second_started = threading.Event()

    def stage(chunk: int) -> int:
        if chunk == 1:
            second_started.set()
            context.cancel_seen.wait(timeout=60)  # a real stage ends when its group is cancelled
            raise RuntimeError("job cancelled")
        second_started.wait(timeout=60)
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError, match="engine died"), closing(
        _pipeline(context, stage, depth=2).staged([0, 1, 2])
    ) as staged:
        next(staged)
    assert context.cancelled == ["candid-r1-chunk-1"]  # chunk 0 failed by itself
    assert "candid-r1-chunk-2" not in context.pools  # never started


def test_a_failing_commit_cancels_the_engine_stage_running_ahead():
    context = RecordingContext()

    def stage(chunk: int) -> int:
        if chunk == 1:
            context.cancel_seen.wait(timeout=60)
            raise RuntimeError("job cancelled")
        return chunk

    with pytest.raises(ValueError, match="merge failed"), closing(
        _pipeline(context, stage, depth=2).staged([0, 1, 2])
    ) as staged:
        for _chunk, _ in staged:
            raise ValueError("merge failed")
    assert context.cancelled == ["candid-r1-chunk-1"]


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth must be at least 1"):
        _pipeline(RecordingContext(), lambda c: c, depth=0)
