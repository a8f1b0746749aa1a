"""Sample size for paired yes/no rates: Connor's formula written out with scipy's normal
quantiles, and checked by simulation: at the sample size it gives, McNemar's test (the
asymptotic one the formula is derived for) rejects about 80 % of the time."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats

from udfs.evaluation import power
from udfs.evaluation.power import (
    INDEPENDENT,
    OBSERVED,
    connor_images,
    detectable_difference,
    images_needed,
)


def _mcnemar_power(n: int, a_only: float, b_only: float, sims: int = 4000, seed: int = 0):
    """Share of simulated paired samples where |c - b| / sqrt(b + c) > z_0.975."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [a_only, b_only, 1 - a_only - b_only], size=sims)
    b, c = counts[:, 0], counts[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(b + c > 0, np.abs(c - b) / np.sqrt(b + c), 0.0)
    return float(np.mean(z > stats.norm.ppf(0.975)))


def test_connor_formula_with_scipys_quantiles():
    za, zb = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    psi, delta = 0.2, 0.1
    expected = (za * math.sqrt(psi) + zb * math.sqrt(psi - delta**2)) ** 2 / delta**2
    assert connor_images(delta, psi) == pytest.approx(expected, rel=1e-12)
    za9 = stats.norm.ppf(0.995)
    assert connor_images(0.05, 0.1, alpha=0.01, power=0.9) == pytest.approx(
        (za9 * math.sqrt(0.1) + stats.norm.ppf(0.9) * math.sqrt(0.1 - 0.0025)) ** 2 / 0.0025)


@pytest.mark.parametrize(("delta", "psi"), [(0.05, 0.15), (0.1, 0.3), (0.03, 0.2)])
def test_images_needed_reach_80_percent_power_in_simulation(delta, psi):
    answer = images_needed(delta, 0.2, psi)
    assert answer.basis == OBSERVED and answer.discordance == psi
    simulated = _mcnemar_power(answer.value, (psi - delta) / 2, (psi + delta) / 2)
    assert 0.77 <= simulated <= 0.84, (answer.value, simulated)


def test_images_needed_are_enough_when_disagreements_go_almost_one_way():
    # psi = 0.1, delta = 0.08: 9 of 10 disagreements favour B. Connor's n is then on the safe
    # side (simulated power above 0.8), never short.
    answer = images_needed(0.08, 0.2, 0.1)
    assert _mcnemar_power(answer.value, 0.01, 0.09) >= 0.8


def test_independent_versions_at_one_rate_reach_80_percent_power_in_simulation():
    rate, delta = 0.1, 0.05
    answer = images_needed(delta, rate)
    assert answer.basis == INDEPENDENT
    # Two independent versions with rates 0.10 and 0.15: A only = 0.1 * 0.85, B only = 0.15 * 0.9.
    assert answer.discordance == pytest.approx(0.1 * 0.85 + 0.15 * 0.9)
    simulated = _mcnemar_power(answer.value, rate * (1 - rate - delta), (rate + delta) * (1 - rate))
    assert 0.77 <= simulated <= 0.84, (answer.value, simulated)


def test_detectable_difference_inverts_images_needed():
    found = detectable_difference(300, 0.2, 0.12)
    assert found.basis == OBSERVED
    assert connor_images(found.value, 0.12) == pytest.approx(300, rel=1e-6)
    alone = detectable_difference(300, 0.2)
    assert alone.basis == INDEPENDENT and alone.value > found.value  # no pair seen: conservative
    assert images_needed(alone.value * 1.001, 0.2).value <= 300


def test_observed_discordance_too_small_falls_back_to_independence():
    # One discordant image in 200: no difference of 0.005 or less is detectable with 200
    # images, so the answer is reached as if the versions were independent, and says so.
    answer = detectable_difference(200, 0.0, 1 / 200)
    assert answer.basis == INDEPENDENT and answer.value > 1 / 200
    assert images_needed(0.05, 0.1, 0.02).basis == INDEPENDENT  # 0.02 < 0.05: impossible


def test_impossible_targets_say_so():
    assert images_needed(0.6, 0.3).value is not None  # 0.3 -> 0.9
    assert images_needed(0.6, 0.5).value is None  # 0.5 -> 1.1: no such rate
    assert images_needed(0.6, 0.8).value is not None  # 0.8 -> 0.2 (above 1/2: downwards)
    assert detectable_difference(2, 1.0, 0.5).value is None
    with pytest.raises(ValueError, match="must be in"):
        images_needed(0.0, 0.2)
    with pytest.raises(ValueError, match="at least 1"):
        detectable_difference(0, 0.2)


def test_docstring_examples_run():
    assert doctest.testmod(power).failed == 0
