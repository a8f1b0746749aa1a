"""The fleet benchmark's simulated GPU and its figures: slots bounded by capacity, every request
back once, the slow GPU slower, and utilization / tail share computed from known spans."""

from __future__ import annotations

import pytest

from benchmarks.fleet_engine import (
    PacedEngine,
    fleet_figures,
    fleet_model,
    read_records,
)
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
