"""The fleet benchmark's simulated GPU and its figures: slots bounded by capacity, every request
back once, the slow GPU slower, utilization / tail share computed from known spans, and the
per-chunk timeline (engines beside the driver's steps, the moments all engines waited)."""

from __future__ import annotations

import pytest

from benchmarks.fleet_engine import (
    PacedEngine,
    fleet_figures,
    fleet_model,
    read_records,
)
from benchmarks.fleet_timeline import chunk_timeline
from udfs.engines.base import Request
from udfs.settings import EngineSettings, ImageSettings


def _engine(tmp_path, gpu: str) -> PacedEngine:
    model = fleet_model(log_dir=tmp_path, capacity=3, service_s=0.001, slow_gpu=1, slow=1.5)
    settings = EngineSettings(backend="vllm", model=model, model_id="bench/fleet")
    return PacedEngine(settings, ImageSettings(), gpu=gpu)


def test_the_stream_keeps_at_most_capacity_in_slots_and_returns_every_request(tmp_path):
    engine = _engine(tmp_path, gpu="0")
    stream = engine.open_stream()
    for key in range(7):  # the simulated engine never reads the prompt or the image
        stream.submit(Request(key=key, call=None, image=None))
    assert stream.in_flight == 7 and len(stream._running) == 3  # 4 wait for a slot
    back: list[int] = []
    while stream.in_flight:
        assert len(stream._running) <= 3
        back += [key for key, _ in stream.poll()]
    assert sorted(back) == list(range(7))
    records = read_records(tmp_path)
    assert records[0]["event"] == "build" and records[0]["service_s"] == 0.001
    assert sum(len(r["requests"]) for r in records if r["event"] == "served") == 7


def test_the_slow_gpu_serves_slower(tmp_path):
    assert _engine(tmp_path, gpu="1").service_s == pytest.approx(0.0015)
    assert _engine(tmp_path, gpu="0").service_s == pytest.approx(0.001)


def test_fleet_figures_from_known_spans():
    records = [
        {"event": "build", "gpu": "0", "capacity": 2},
        {"event": "build", "gpu": "1", "capacity": 2},
        # GPU 0: both slots busy 0-10 s; GPU 1: both slots busy 0-8 s.
        {"event": "served", "gpu": "0", "requests": [[0.0, 10.0], [0.0, 10.0]]},
        {"event": "served", "gpu": "1", "requests": [[0.0, 8.0], [0.0, 8.0]]},
    ]
    figures = fleet_figures(records, engines=2)
    # Busy: 10 + 8 engine-seconds over 2 engines x 10 s.
    assert figures["fleet_utilization"] == pytest.approx(0.9)
    assert figures["builds_per_gpu"] == {"0": 1, "1": 1}
    assert figures["busy_s_per_gpu"] == {"0": 10.0, "1": 8.0}
    # From 8 s to 10 s only GPU 0 is busy: 2 s of 10.
    assert figures["tail_share"] == pytest.approx(0.2)


def test_an_engine_that_never_served_counts_as_idle_throughout():
    records = [
        {"event": "build", "gpu": "0", "capacity": 1},
        {"event": "served", "gpu": "0", "requests": [[0.0, 4.0]]},
    ]
    figures = fleet_figures(records, engines=2)
    assert figures["fleet_utilization"] == pytest.approx(0.5)
    assert figures["tail_share"] == pytest.approx(1.0)


def test_the_timeline_lines_engines_up_with_the_driver_steps():
    records = [
        # GPU 0 busy 100-110 and 120-130; GPU 1 busy 100-112 and 121-130.
        {"event": "build", "gpu": "0", "capacity": 2},
        {"event": "served", "gpu": "0", "requests": [[100.0, 105.0], [104.0, 110.0]]},
        {"event": "served", "gpu": "1", "requests": [[100.0, 112.0]]},
        {"event": "served", "gpu": "0", "requests": [[120.0, 130.0]]},
        {"event": "served", "gpu": "1", "requests": [[121.0, 130.0]]},
    ]
    driver = [
        {"step": "stage", "chunk": 0, "start": 98.0, "end": 113.0},
        {"step": "stage", "chunk": 1, "start": 113.0, "end": 131.0},
        {"step": "commit", "chunk": 0, "start": 113.0, "end": 117.0},
        {"step": "write_back", "chunk": 0, "start": 117.0, "end": 119.0},
        {"step": "commit", "chunk": 1, "start": 131.0, "end": 134.0},
    ]
    timeline = chunk_timeline(records, driver)
    assert timeline["engines"] == {"0": [0.0, 30.0], "1": [0.0, 30.0]}
    assert timeline["chunks"] == [
        {"chunk": 0, "commit": [13.0, 17.0], "stage": [-2.0, 13.0], "write_back": [17.0, 19.0]},
        {"chunk": 1, "commit": [31.0, 34.0], "stage": [13.0, 31.0]},
    ]
    idle = timeline["all_idle"]
    # No engine held a request from 112 to 120: 6 s of it beside commit and write-back of
    # chunk 0 (113-119), the rest not.
    assert idle["gaps"] == [{"at": 12.0, "s": 8.0,
                             "driver": ["commit 0", "stage 0", "stage 1", "write_back 0"]}]
    assert (idle["s"], idle["s_while_committing"], idle["s_otherwise"]) == (8.0, 6.0, 2.0)
    assert timeline["median_s"] == {"commit": 3.5, "stage": 16.5, "write_back": 2.0}


def test_the_timeline_of_a_run_that_served_nothing_is_empty():
    assert chunk_timeline([], []) == {
        "engines": {}, "chunks": [], "median_s": {},
        "all_idle": {"s": 0.0, "s_while_committing": 0.0, "s_otherwise": 0.0, "gaps": []}}
