"""Streamed feeding (udfs.runner.feeding through the runner, describing) with fake engines: the
engine is kept full, rows come back in order per frame, a bad request fails alone, a dead engine
is rebuilt once, decoded images waiting are bounded, and the partition's stats add up."""

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.fakes import POISON_RGB, REJECT_RGB, FakeEngine, StreamingFakeEngine
from udfs.images.prepare import load_image
from udfs.prompts import find_prompt
from udfs.runner.describe import DescribeTask
from udfs.runner.feed_stats import FeedStats
from udfs.runner.feeding import engine_metrics, feed_frames
from udfs.runner.task import run_batches
from udfs.settings import EngineSettings, ImageSettings

PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "prompts"


def _settings(max_num_seqs: int = 4) -> EngineSettings:
    return EngineSettings(model="fake", vllm={"max_num_seqs": max_num_seqs})


def _task(max_num_seqs: int = 4, **fields) -> DescribeTask:
    prompt = find_prompt(PROMPTS, "v2")
    return DescribeTask(
        engine=_settings(max_num_seqs), prompt=prompt, sampling=prompt.sampling, run_id="run-s",
        **fields,
    )


def _write(
    folder: Path, count: int, colours: dict[int, tuple[int, int, int]] | None = None
) -> list[str]:
    """``count`` PNGs of different widths (so the fake finishes them after different numbers
    of steps); ``colours`` paints chosen ones (poison, reject)."""
    colours = colours or {}
    paths = []
    for index in range(count):
        path = folder / f"img_{index}.png"
        colour = colours.get(index, (10 * index % 250, 100, 50))
        Image.new("RGB", (56 + 28 * (index % 7), 84), colour).save(path)
        paths.append(str(path))
    return paths


def _frames(paths: list[str], sizes: list[int]) -> list[pd.DataFrame]:
    assert sum(sizes) == len(paths)
    frames, start = [], 0
    for size in sizes:
        chunk = paths[start:start + size]
        frames.append(pd.DataFrame({"image_id": [Path(p).stem for p in chunk], "path": chunk}))
        start += size
    return frames


class Builds:
    """Builds engines on demand like the worker cache; ``dies`` gives each build's
    ``dies_at_step`` in turn (the last one repeats)."""

    def __init__(self, dies: list[int | None] | None = None, step_sleep_s: float = 0.0,
                 preempt_at_steps: frozenset[int] = frozenset()):
        self.dies, self.step_sleep_s, self.built = dies or [None], step_sleep_s, []
        self.preempt_at_steps = preempt_at_steps

    def get(self) -> StreamingFakeEngine:
        if not self.built or self.built[-1].closed:
            engine = StreamingFakeEngine(_settings(), ImageSettings())
            engine.dies_at_step = self.dies[min(len(self.built), len(self.dies) - 1)]
            engine.step_sleep_s = self.step_sleep_s
            engine.preempt_at_steps = self.preempt_at_steps
            self.built.append(engine)
        return self.built[-1]

    def reset(self) -> None:
        if self.built:
            self.built[-1].shutdown()


def _run(frames, task, builds, on_stats=None) -> list[pd.DataFrame]:
    return list(run_batches(iter(frames), task, builds.get, builds.reset, on_stats))


def test_the_engine_is_kept_at_capacity_while_rows_remain(tmp_path):
    paths = _write(tmp_path, 30)
    builds = Builds()
    frames = _frames(paths, [4] * 7 + [2])
    out = pd.concat(_run(frames, _task(max_num_seqs=4), builds), ignore_index=True)
    assert (out["status"] == "ok").all() and len(out) == 30
    (engine,) = builds.built
    steps = engine.in_flight_at_step
    # Whenever rows were left to submit, at least max_num_seqs (4) requests were in flight,
    # though requests leave after 1-5 steps each: new ones were added as others finished.
    assert all(in_flight >= 4 for in_flight, submitted in steps if submitted < 30), steps
    assert max(in_flight for in_flight, _ in steps) <= 6  # capacity + headroom
    # 30 requests of 1-5 steps at 4 per step: far fewer steps than one request at a time.
    assert len(steps) < sum(1 + w % 5 for w in out["input_width"])


def test_every_frame_comes_back_whole_and_in_order(tmp_path):
    paths = _write(tmp_path, 13)
    sizes = [3, 0, 5, 1, 4]
    results = _run(_frames(paths, sizes), _task(max_num_seqs=3), Builds())
    assert [len(frame) for frame in results] == sizes
    out = pd.concat([frame for frame in results if len(frame)], ignore_index=True)
    assert list(out["image_id"]) == [f"img_{i}" for i in range(13)]
    # Requests finish out of order; each row still carries its own image's output.
    for _, row in out.iterrows():
        assert row["description"].startswith(f"fake {row['input_width']}x{row['input_height']} ")


def test_a_request_the_engine_rejects_fails_alone(tmp_path):
    paths = _write(tmp_path, 9, {1: REJECT_RGB, 6: REJECT_RGB})
    out = pd.concat(_run(_frames(paths, [9]), _task(), Builds()), ignore_index=True)
    assert list(out["status"] == "engine_error") == [i in {1, 6} for i in range(9)]
    assert out.loc[1, "status_message"] == (
        f"{paths[1]}: ValueError: request rejected by the fake processor"
    )
    assert out.loc[out["status"] == "ok", "description"].notna().all()


def test_a_request_that_breaks_a_step_fails_alone(tmp_path):
    paths = _write(tmp_path, 12, {2: POISON_RGB, 9: POISON_RGB})
    builds = Builds()
    out = pd.concat(_run(_frames(paths, [5, 7]), _task(), builds), ignore_index=True)
    assert list(out["status"] == "engine_error") == [i in {2, 9} for i in range(12)]
    assert out.loc[2, "status_message"].endswith("ValueError: poisoned image in batch")
    # The in-flight set was regenerated batch-wise and bisected on the same engine.
    assert len(builds.built) == 1 and builds.built[0].batch_sizes
    assert (out.loc[out["status"] == "ok", "description"].str.startswith("fake ")).all()


def test_a_dead_engine_is_rebuilt_once_and_its_requests_resubmitted(tmp_path):
    paths = _write(tmp_path, 10)
    builds = Builds(dies=[2, None])
    stats: list[FeedStats] = []
    out = pd.concat(_run(_frames(paths, [6, 4]), _task(), builds, stats.append), ignore_index=True)
    assert (out["status"] == "ok").all()
    assert list(out["image_id"]) == [f"img_{i}" for i in range(10)]
    first, second = builds.built
    assert first.closed and not second.closed
    by_engine = out["description"].str.split(" by ").str[1].value_counts()
    # Step 1 of the first engine finished the requests that needed one step; everything else
    # (including what was in flight when it died) was served by the rebuilt engine.
    assert by_engine[first.instance] == first.served >= 1
    assert by_engine[second.instance] == 10 - first.served
    assert stats[0].engine_rebuilds == 1


def test_an_engine_dying_twice_in_a_row_fails_the_task(tmp_path):
    paths = _write(tmp_path, 6)
    builds = Builds(dies=[1])
    with pytest.raises(RuntimeError, match="engine failed fatally twice in a row") as failure:
        _run(_frames(paths, [6]), _task(), builds)
    assert "fake engine died at step 1" in str(failure.value)
    assert len(builds.built) == 2 and all(engine.closed for engine in builds.built)


def test_decoded_images_waiting_never_exceed_the_cap(tmp_path):
    paths = _write(tmp_path, 40)
    builds = Builds(step_sleep_s=0.01)  # a slow engine: decoding runs ahead until the cap
    loaded: list[int] = []
    seen: list[int] = []

    def load(path: str):
        item = load_image(path, ImageSettings())
        loaded.append(1)
        submitted = len(builds.built[-1].submitted) if builds.built else 0
        seen.append(len(loaded) - submitted)  # decoded here and not yet given to the engine
        return item

    stats = FeedStats()
    task = _task()
    outcomes = feed_frames(
        iter(_frames(paths, [8] * 5)), task.plan, connect=lambda: builds.get().open_stream(),
        reset=builds.reset, load=load, prep_threads=3, max_waiting=5, stats=stats,
    )
    rows = [row for _, frame_rows in outcomes for row in frame_rows]
    assert len(rows) == 40 and all(row.prepared.image is None for row in rows)
    assert max(seen) <= 5 and stats.max_images_waiting == 5
    assert max(seen) == 5  # the pool did run ahead of the engine, up to the cap


def test_stats_add_up_and_match_the_result_rows(tmp_path):
    paths = _write(tmp_path, 11, {4: REJECT_RGB})
    paths[7] = str(tmp_path / "missing.png")
    reported: list[FeedStats] = []
    results = _run(_frames(paths, [6, 5]), _task(), Builds(), reported.append)
    out = pd.concat(results, ignore_index=True)
    (stats,) = reported
    assert stats.rows == 11 and stats.requests == 10 and stats.failed_requests == 1
    ok = out[out["status"] == "ok"]
    assert len(ok) == 9
    assert stats.prompt_tokens == ok["prompt_tokens"].sum() == 9 * 9
    assert stats.completion_tokens == ok["completion_tokens"].sum() == 9 * 4
    # The fake serves its first request cold and the rest from its prefix cache (5 tokens).
    assert sorted(ok["cached_prompt_tokens"]) == [0] + [5] * 8
    assert stats.cached_prompt_tokens == 40
    assert stats.cached_prompt_ratio == pytest.approx(40 / 81)
    assert 0 < stats.step_s <= stats.busy_s <= stats.wall_s
    assert stats.images_per_s == pytest.approx(11 / stats.wall_s)
    assert stats.busy_fraction == pytest.approx(stats.busy_s / stats.wall_s)
    assert stats.to_dict()["images_per_s"] == stats.images_per_s
    # What the driver would get back from the executors: dicts, summed over partitions.
    again = FeedStats.from_dict(stats.to_dict())
    assert again == stats
    both = FeedStats.combined([stats, again, FeedStats()])
    assert (both.rows, both.requests, both.cached_prompt_tokens) == (22, 20, 80)
    assert both.busy_fraction == pytest.approx(stats.busy_fraction)
    # Latency is per request (submit -> finished); rows that never reached the engine have none.
    assert (ok["latency_ms"] > 0).all()
    assert out.loc[out["status"] == "missing_file", "latency_ms"].isna().all()


def test_generate_only_engines_stay_batch_wise_across_frames(tmp_path):
    paths = _write(tmp_path, 7)
    built: list[FakeEngine] = []
    # A batch-wise backend's own setting sets the images per generate call, not the frames.
    settings = EngineSettings(backend="transformers", model="fake",
                              transformers={"images_per_call": 3})

    def get() -> FakeEngine:
        if not built:
            built.append(FakeEngine(settings, ImageSettings()))
        return built[0]

    frames = _frames(paths, [2, 2, 2, 1])
    task = _task().model_copy(update={"engine": settings, "batch_size": 5})
    reported: list[FeedStats] = []
    out = pd.concat(run_batches(iter(frames), task, get, on_stats=reported.append))
    assert built[0].batch_sizes == [3, 3, 1]
    assert list(out["image_id"]) == [f"img_{i}" for i in range(7)]
    assert out["cached_prompt_tokens"].isna().all()  # this engine cannot say
    assert out["mean_logprob"].isna().all() and out["min_logprob"].isna().all()
    # A batch-wise request is scheduled when its generate call begins.
    assert ((out["queue_wait_ms"] >= 0) & (out["queue_wait_ms"] <= out["latency_ms"])).all()
    (stats,) = reported
    assert stats.queue_waits == 7 and stats.in_flight_peak == 3
    # No scheduler of its own: no engine figures, and none logged.
    assert stats.preemptions is None and stats.kv_cache_usage_mean is None
    assert not {"kv_cache_usage_mean", "preemptions", "engine_running_peak"} & set(
        engine_metrics(stats))


def test_rows_carry_their_queue_wait_and_token_logprobs(tmp_path):
    paths = _write(tmp_path, 12)
    builds = Builds(step_sleep_s=0.01)
    out = pd.concat(_run(_frames(paths, [12]), _task(max_num_seqs=4), builds), ignore_index=True)
    assert (out["status"] == "ok").all()
    # The fake's token log-probabilities are (-0.25, -0.5, -1.0, -2.25).
    assert (out["mean_logprob"] == -1.0).all() and (out["min_logprob"] == -2.25).all()
    waits, latencies = out["queue_wait_ms"], out["latency_ms"]
    assert ((waits >= 0) & (waits <= latencies)).all()
    # Each row's wait is the one the scheduler saw, from add to first step (order-free: the
    # feeder's pace decides which rows queue), within the time between stamp and add.
    seen = sorted(w for engine in builds.built for w, _ in engine.waits)
    assert list(sorted(waits)) == pytest.approx(seen, abs=5.0)
    # A request added behind a full engine waits at least one step's sleep (10 ms).
    assert all(w >= 10.0 for engine in builds.built for w, queued in engine.waits if queued)


def test_live_engine_figures_add_up_across_a_rebuild(tmp_path):
    paths = _write(tmp_path, 20)
    # Each engine preempts a request in its third step; the first dies at its fifth.
    builds = Builds(dies=[5, None], step_sleep_s=0.002, preempt_at_steps=frozenset({3}))
    reported: list[FeedStats] = []
    out = pd.concat(_run(_frames(paths, [20]), _task(max_num_seqs=4), builds, reported.append))
    assert (out["status"] == "ok").all()
    (stats,) = reported
    assert stats.engine_rebuilds == 1 and stats.preemptions == 2
    assert stats.engine_running_peak == 4 and stats.kv_cache_usage_max == 1.0
    assert 0 < stats.kv_cache_usage_mean <= 1 and 0 < stats.engine_running_mean <= 4
    assert stats.engine_waiting_mean > 0  # the headroom waits inside the engine
    assert 0 < stats.engine_sampled_s <= stats.step_s
    assert stats.in_flight_peak == 6 and 0 < stats.in_flight_mean <= 6
    assert stats.queue_waits == 20 and stats.queue_wait_ms_mean > 0
    metrics = engine_metrics(stats, prefix="chunk.")
    assert metrics["chunk.preemptions"] == 2.0 and metrics["chunk.kv_cache_usage_max"] == 1.0
    assert metrics["chunk.engine_running_peak"] == 4.0 and metrics["chunk.in_flight_peak"] == 6.0
    assert metrics["chunk.queue_wait_ms_mean"] == pytest.approx(stats.queue_wait_ms_mean)
    # Two partitions: counts add up, peaks and maxima stay, means stay means.
    both = FeedStats.combined([stats, FeedStats.from_dict(stats.to_dict())])
    assert (both.preemptions, both.engine_running_peak, both.in_flight_peak) == (4, 4, 6)
    assert both.kv_cache_usage_max == 1.0 and both.queue_waits == 40
    assert both.kv_cache_usage_mean == pytest.approx(stats.kv_cache_usage_mean)
    assert both.queue_wait_ms_mean == pytest.approx(stats.queue_wait_ms_mean)
