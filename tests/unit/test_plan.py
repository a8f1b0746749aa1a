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
