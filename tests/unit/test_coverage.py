"""A few points of the coverage benchmark (benchmarks/bench_coverage.py), with a fixed seed:
the intervals the product prints hold the truth about 95 % of the time where the percentile
bootstrap they replace held it 62-85 % (issue 19), and never have zero width."""

from __future__ import annotations

import pytest

from benchmarks.bench_coverage import coverage_point, exact_share_coverage, verdict
from benchmarks.coverage_kappa import kappa_cells, kappa_point

SETS = 400
# Binomial standard error at 400 sets is about 1.1 points: 0.91 is 3-4 of them below 0.95.
FLOOR = 0.91


@pytest.mark.parametrize(("method", "n", "p"), [
    ("per_image_rate", 20, 0.1),
    ("paired_difference_same", 50, 0.1),
    ("per_mention_rate", 20, 0.1),
    ("paired_mention_difference", 50, 0.5),
    ("auroc", 200, 0.1),
])
def test_intervals_cover_where_the_bootstrap_did_not(method, n, p):
    point = coverage_point(method, n, p, SETS, seed=3)
    assert point["defined"] == SETS
    assert point["coverage"] >= FLOOR, point
    assert point["zero_width"] == 0


@pytest.mark.parametrize(("n", "setting"), [
    # The Wald interval of Fleiss-Cohen-Everitt's standard error covered 0.51 and 0.72 here.
    (50, (0.1, 0.1, 0.0)),
    (20, (0.1, 0.1, 0.4)),
])
def test_the_kappa_interval_covers_where_a_rare_answer_broke_wald(n, setting):
    point = kappa_point(n, setting, SETS, seed=3)
    assert point["coverage"] >= FLOOR, point
    assert point["zero_width"] == 0
    # Kappa is undefined only when both raters said no to every row.
    assert point["defined"] >= SETS * 0.9
    # The baseline the benchmark reports beside it: the Wald interval of the same data.
    assert point["wald"]["coverage"] < 0.8, point["wald"]


@pytest.mark.parametrize("setting", [(0.1, 0.1, 0.4), (0.5, 0.5, 0.8), (0.2, 0.4, 0.4)])
def test_kappa_cells_have_the_yes_rates_and_kappa_asked_for(setting):
    yes_a, yes_b, truth = setting
    both, a_only, b_only, neither = kappa_cells(*setting)
    assert both + a_only + b_only + neither == pytest.approx(1.0)
    assert (both + a_only, both + b_only) == pytest.approx((yes_a, yes_b))
    chance = yes_a * yes_b + (1 - yes_a) * (1 - yes_b)
    assert (both + neither - chance) / (1 - chance) == pytest.approx(truth)
    with pytest.raises(ValueError, match="impossible"):
        kappa_cells(0.1, 0.5, 0.9)


def test_all_zero_data_gets_a_real_interval():
    # n = 20, p = 0: every data set is 0 of 20; the bootstrap printed 0.00..0.00.
    point = coverage_point("per_image_rate", 20, 0.0, 50, seed=0)
    assert point["coverage"] == 1.0 and point["zero_width"] == 0
    assert point["mean_width"] == pytest.approx(0.1684, abs=1e-4)


def test_exact_share_coverage_and_what_discreteness_allows():
    # n = 10, p = 0.02: k is 0 or 1 in 98.4 % of data sets; no interval method can cover
    # between 93 % and 97 %.
    covered, reachable = exact_share_coverage(10, 0.02)
    assert covered == pytest.approx(0.98**10 + 10 * 0.02 * 0.98**9)
    assert reachable is False
    covered, reachable = exact_share_coverage(200, 0.5)
    assert reachable is True and covered >= 0.95  # Clopper-Pearson: never below nominal


def test_verdicts_name_why_a_point_is_outside_the_band():
    base = {"method": "per_mention_rate", "n": 10, "p": 0.1, "at_most_one_event": 0.4}
    assert verdict({**base, "coverage": 0.95}) == "in band"
    assert verdict({**base, "coverage": 0.90}) == "BELOW the band"
    assert verdict({**base, "p": 0.0, "coverage": 1.0}).startswith("above: at p=0")
    assert verdict({**base, "method": "per_image_rate", "coverage": 0.99}).startswith(
        "above: conservative by design (exact (Clopper-Pearson)")
    assert verdict({**base, "coverage": 0.99}).startswith("above: conservative where events "
                                                          "are few (at most one event in 40%")
