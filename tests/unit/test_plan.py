"""``candid plan``'s arithmetic, against figures worked out by hand."""

import pytest

from jobs.cluster.capacity_plan import plan_run
from jobs.config import ConfigError


def test_the_seeds_run_at_the_goal_rate():
    plan = plan_run(12_800_000, gpus=10, rate_per_engine=30.0)
    assert plan.cluster_rate == 300.0
    assert plan.wall_hours == pytest.approx(12_800_000 / 300 / 3600)  # 11.85 h
    assert plan.gpu_hours == pytest.approx(118.5185, abs=1e-3)
    assert plan.chunk_size == 270_000  # 300 images/s x 15 min
    assert plan.chunks == 48  # 47.4 chunks of 270 k, rounded up


def test_chunk_sizes_are_rounded_and_never_below_one_rounding_step():
    assert plan_run(1_000, gpus=1, rate_per_engine=1.0).chunk_size == 10_000  # 900 rows -> floor
    assert plan_run(10**6, gpus=3, rate_per_engine=7.0, chunk_minutes=20).chunk_size == 30_000  # 25,200


@pytest.mark.parametrize("images, gpus, rate, minutes", [
    (0, 1, 1.0, 15.0), (10, 0, 1.0, 15.0), (10, 1, 0.0, 15.0), (10, 1, float("nan"), 15.0),
    (10, 1, 1.0, 0.0),
])
def test_impossible_plans_are_config_errors(images, gpus, rate, minutes):
    with pytest.raises(ConfigError):
        plan_run(images, gpus, rate, minutes)


def test_a_plan_as_metrics_named_like_the_cost_ledger():
    from jobs.cluster.capacity_plan import plan_metrics

    metrics = plan_metrics(plan_run(12_800_000, gpus=10, rate_per_engine=32.0))
    assert metrics["plan.images_per_s_per_engine"] == 32.0
    assert metrics["plan.gpu_s_per_1000_images"] == pytest.approx(31.25)  # 1000 / 32
    assert metrics["plan.gpu_hours"] == pytest.approx(12_800_000 / 32 / 3600)
    assert metrics["plan.chunk_size"] == 290_000.0 and metrics["plan.gpus"] == 10.0


def test_actual_against_planned():
    from jobs.cluster.capacity_plan import actual_vs_plan

    planned = {"plan.images_per_s_per_engine": 30.0, "plan.gpu_s_per_1000_images": 33.33}
    actual = {"images_per_s_per_engine": 27.0, "gpu_s_per_1000_images": 40.0, "tail_share": 0.1}
    ratios, lines = actual_vs_plan(actual, planned, "p1")
    assert ratios == pytest.approx({"vs_plan.images_per_s_per_engine": 0.9,
                                    "vs_plan.gpu_s_per_1000_images": 40.0 / 33.33})
    assert lines[0] == "images_per_s_per_engine: 27.00 actual vs 30.00 planned in run p1 (90%)"
    # A run that described nothing has no ledger: nothing to compare, nothing made up.
    assert actual_vs_plan({}, planned, "p1") == ({}, [])
