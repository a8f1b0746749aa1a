"""A/B verdicts: rates with intervals, paired verdicts (Newcombe or square-and-add, exact
McNemar, sample size) and the guardrail-flag comparisons of ``candid compare``, on small cases
worked out by hand or with scipy."""

from __future__ import annotations

import doctest

import pytest
from scipy import stats

from udfs.evaluation import ab
from udfs.evaluation.ab import (
    ANY_FLAG,
    IntervalSettings,
    aligned,
    flag_names,
    flag_rate_cis,
    flag_values,
    flag_verdicts,
    format_ci,
    format_p,
    paired_verdict,
    rate_ci,
    verdict_metrics,
)

ONES, ZEROS = ([1, 1, 1, 1], [1, 1, 1, 1]), ([0, 0, 0, 0], [1, 1, 1, 1])


def test_rate_ci_is_undefined_without_items_or_denominators():
    assert rate_ci(([], [])) is None
    assert rate_ci(([0, 0], [0, 0])) is None  # e.g. per-mention rate with no judged mention


def test_rate_ci_of_a_ratio_of_sums():
    ci = rate_ci(([1, 0, 2], [2, 1, 3]))
    assert ci.estimate == pytest.approx(3 / 6)
    assert 0 <= ci.low <= ci.estimate <= ci.high <= 1
    assert (ci.n_items, ci.method) == (3, "cluster_ratio")


def test_a_yes_no_rate_is_a_share_with_its_exact_interval():
    ci = rate_ci(([0, 1, 0, 0, 1], [1] * 5))
    ref = stats.binomtest(2, 5).proportion_ci(method="exact")
    assert (ci.method, ci.estimate) == ("clopper_pearson", 0.4)
    assert (ci.low, ci.high) == pytest.approx((ref.low, ref.high))


def test_images_where_a_rate_is_undefined_are_left_out():
    # A rate per stated count: rows 2 and 4 stated none; it is 1 of 2, a share.
    ci = rate_ci(([1, 0, 0, 0], [1, 0, 1, 0]))
    assert (ci.estimate, ci.n_items, ci.method) == (0.5, 2, "clopper_pearson")


def test_every_image_fixed_is_not_a_certain_difference():
    v = paired_verdict("hallucination_per_description", ("v1", ONES), ("v2", ZEROS))
    assert (v.rate_a, v.rate_b) == (1.0, 0.0)
    assert v.diff.estimate == -1.0 and v.diff.low == -1.0 and -1.0 < v.diff.high < 0
    # 4 discordant pairs all one way: p = 2 * (1/2)^4.
    assert (v.mcnemar.b, v.mcnemar.c, v.mcnemar.p_value) == (4, 0, 0.125)
    high = f"{v.diff.high:+.2f}"
    assert v.line() == ("hallucination_per_description 1.00 -> 0.00, diff -1.00 "
                        f"(95% CI -1.00..{high}), McNemar exact p=0.12 (b=4, c=0; 4 images)")
    assert v.line(percent=True).startswith("hallucination_per_description 100% -> 0%, diff "
                                           "-100% (95% CI -100%..")


def test_mcnemar_counts_only_the_discordant_images():
    a = ([1, 1, 0, 0, 1, 0], [1] * 6)
    b = ([0, 1, 1, 0, 0, 0], [1] * 6)
    v = paired_verdict("count_wrong", ("v1", a), ("v2", b))
    # image 0 and 4: A only (b=2); image 2: B only (c=1); p = 2 * P(X<=1), X~Bin(3, 1/2) = 1.
    assert (v.mcnemar.b, v.mcnemar.c, v.mcnemar.p_value) == (2, 1, 1.0)
    assert v.diff.estimate == pytest.approx(2 / 6 - 3 / 6)


def test_non_binary_metrics_get_no_mcnemar():
    v = paired_verdict("coverage", ("v1", ([0.5, 1.0], [1, 1])), ("v2", ([1.0, 1.0], [1, 1])))
    assert v.mcnemar is None and "McNemar" not in v.line()
    assert v.diff.estimate == pytest.approx(0.25) and v.diff.method == "mover_paired_ratio"
    assert v.detectable is None


def test_a_per_mention_verdict_says_images_and_mentions():
    a = ([1, 0, 2], [3, 2, 4])
    b = ([0, 0, 1], [2, 2, 5])
    v = paired_verdict("hallucination_per_mention", ("v1", a), ("v2", b), units="mentions")
    assert (v.n_images, v.units_a, v.units_b) == (3, 9.0, 9.0)
    assert v.line().endswith("(3 images; 9 and 9 mentions)")


def test_paired_verdict_refuses_unpaired_and_skips_undefined():
    with pytest.raises(ValueError, match="v1 has 2 images, v2 3"):
        paired_verdict("m", ("v1", ([1, 0], [1, 1])), ("v2", ([1, 0, 0], [1, 1, 1])))
    assert paired_verdict("m", ("v1", ([], [])), ("v2", ([], []))) is None
    assert paired_verdict("m", ("v1", ([0], [0])), ("v2", ([1], [1]))) is None


def test_confidence_changes_the_interval_not_the_estimate():
    data = ([1, 0, 1, 1, 0, 1, 0, 1], [1] * 8)
    narrow = rate_ci(data, IntervalSettings(confidence=0.5))
    wide = rate_ci(data, IntervalSettings(confidence=0.99))
    assert narrow.estimate == wide.estimate == 5 / 8
    assert wide.low <= narrow.low and narrow.high <= wide.high


def test_a_yes_no_verdict_carries_its_sample_size_figures():
    a = ([1] * 30 + [0] * 170, [1] * 200)
    b = ([1] * 20 + [0] * 10 + [1] * 4 + [0] * 166, [1] * 200)  # b = 10, c = 4
    v = paired_verdict("flag", ("v1", a), ("v2", b), IntervalSettings(detect=0.05))
    assert v.detectable.basis == "observed discordance" and v.detectable.discordance == 14 / 200
    assert 0 < v.detectable.value <= 14 / 200
    assert v.needed.value > 200  # 0.05 needs more than these 200 images
    assert "b_vs_a.flag.images_needed" in verdict_metrics("b_vs_a", [v])


def test_aligned_pairs_by_image_id_and_drops_undefined():
    a = {"c": (1.0, 1.0), "a": (0.0, 1.0), "b": None, "only-a": (1.0, 1.0)}
    b = {"a": (1.0, 1.0), "b": (1.0, 1.0), "c": (1.0, 2.0)}
    assert aligned(a, b) == (([0.0, 1.0], [1.0, 1.0]), ([1.0, 1.0], [1.0, 2.0]))


# --- guardrail flags --------------------------------------------------------------------------
V1_FLAGS = {"i1": ["generic_opener"], "i2": ["generic_opener", "truncated"], "i3": [],
            "i4": None}
V2_FLAGS = {"i1": [], "i2": ["truncated"], "i3": ["stated_count"], "i4": []}


def test_flag_values_leave_error_rows_out():
    assert flag_values(V1_FLAGS, "truncated") == {
        "i1": (0.0, 1.0), "i2": (1.0, 1.0), "i3": (0.0, 1.0), "i4": None}
    assert flag_values(V1_FLAGS, ANY_FLAG)["i1"] == (1.0, 1.0)
    assert flag_values(V1_FLAGS, ANY_FLAG)["i3"] == (0.0, 1.0)


def test_flag_names_are_sorted_then_any_flag():
    assert flag_names({"v1": V1_FLAGS, "v2": V2_FLAGS}) == [
        "generic_opener", "stated_count", "truncated", ANY_FLAG]


def test_flag_rates_are_over_ok_rows():
    rates = flag_rate_cis(V1_FLAGS, ["generic_opener", "stated_count", ANY_FLAG])
    assert rates["generic_opener"].estimate == pytest.approx(2 / 3)  # i4 failed: not counted
    assert rates["stated_count"].estimate == 0.0
    assert rates[ANY_FLAG].estimate == pytest.approx(2 / 3)


def test_flag_verdicts_pair_the_images_both_described():
    verdicts = {v.metric: v for v in flag_verdicts(
        ("v1", V1_FLAGS), ("v2", V2_FLAGS), ["generic_opener", "stated_count", ANY_FLAG])}
    opener = verdicts["generic_opener"]
    assert opener.n_images == 3  # i4 has no v1 output
    assert (opener.rate_a, opener.rate_b) == (pytest.approx(2 / 3), 0.0)
    assert (opener.mcnemar.b, opener.mcnemar.c, opener.mcnemar.p_value) == (2, 0, 0.5)
    stated = verdicts["stated_count"]
    assert (stated.mcnemar.b, stated.mcnemar.c) == (0, 1)
    # any flag: i1 v1 only, i3 v2 only, i2 both.
    assert (verdicts[ANY_FLAG].mcnemar.b, verdicts[ANY_FLAG].mcnemar.c) == (1, 1)


def test_verdict_metrics_name_every_number():
    v = paired_verdict("count_wrong", ("v1", ONES), ("v2", ZEROS))
    assert verdict_metrics("v2_vs_v1", [v]) == {
        "v2_vs_v1.count_wrong.diff": -1.0, "v2_vs_v1.count_wrong.diff_ci_low": -1.0,
        "v2_vs_v1.count_wrong.diff_ci_high": v.diff.high, "v2_vs_v1.count_wrong.mcnemar_p": 0.125,
        # 4 images, all discordant: only a difference of nearly 1 is detectable.
        "v2_vs_v1.count_wrong.detectable_diff": pytest.approx(1.0, abs=0.01),
    }


def test_formatting():
    assert format_p(0.049999) == "0.05" and format_p(0.00009) == "<0.0001"
    ci = rate_ci(ONES)  # 4 of 4: Clopper-Pearson's lower bound is 0.025 ** (1/4) = 0.40
    assert format_ci(ci) == "1.00 (4 of 4; 95% CI 0.40..1.00)"
    assert format_ci(ci, percent=True) == "100% (4 of 4; 95% CI 40%..100%)"
    assert format_ci(rate_ci(([0.5, 1.0], [1, 1]))).startswith("0.75 (2 images; 95% CI ")


def test_docstring_examples_run():
    assert doctest.testmod(ab).failed == 0
