"""``candid compare``'s verdicts from the sampled result rows: flag rates with intervals over
ok rows, McNemar per flag on the images both versions described, the sample-size figures, the
printed lines and the MLflow metric names. On Spark with a scripted engine: tests/spark/test_eval_scripted.py."""

from __future__ import annotations

import math

from scipy import stats

from jobs.evaluation.compare import ab_lines, ab_metrics, flag_ab
from udfs.evaluation.ab import IntervalSettings
from udfs.prompts import PromptSpec

V1 = PromptSpec(name="describe", version="v1", system="s", instructions="i")
V2 = PromptSpec(name="describe", version="v2", system="s", instructions="i")


def _rows(version, per_image):
    return [{"image_id": i, "prompt_name": "describe", "prompt_version": version,
             "status": status, "guardrail_flags": flags} for i, (status, flags) in per_image.items()]


RECORDS = _rows("v1", {
    "a": ("ok", ["generic_opener"]), "b": ("ok", ["generic_opener"]), "c": ("ok", None),
    "d": ("missing_file", []),
}) + _rows("v2", {
    "a": ("ok", []), "b": ("ok", ["stated_count"]), "c": ("ok", []), "d": ("missing_file", []),
})


def test_rates_are_over_ok_rows_and_ok_rate_over_all():
    ab = flag_ab(RECORDS, [V1, V2])
    v1 = {k: ci.estimate for k, ci in ab.rates["v1"].items()}
    assert v1 == {"ok_rate": 0.75, "generic_opener": 2 / 3, "stated_count": 0.0,
                  "any_flag": 2 / 3}


def test_each_flag_is_judged_on_the_images_both_versions_described():
    ((a, b, verdicts),) = flag_ab(RECORDS, [V1, V2]).verdicts
    assert (a, b) == ("v1", "v2")
    by_flag = {v.metric: v for v in verdicts}
    opener = by_flag["generic_opener"]
    assert (opener.n_images, opener.mcnemar.b, opener.mcnemar.c) == (3, 2, 0)
    assert opener.mcnemar.p_value == 0.5  # 2 * (1/2)^2
    assert (by_flag["stated_count"].mcnemar.b, by_flag["stated_count"].mcnemar.c) == (0, 1)


def test_printed_lines_and_metric_names():
    ab = flag_ab(RECORDS, [V1, V2], IntervalSettings(detect=0.05))
    lines = ab_lines(ab)
    # 3 of 4 rows ok: Clopper-Pearson 0.194..0.994, printed with its counts.
    assert lines[0].startswith("  v1 rates: ok_rate 75% (3 of 4; 95% CI 19%..99%)")
    assert "stated_count 0% (0 of 3; 95% CI 0%..71%)" in lines[0]
    assert any(line.startswith("  v2 vs v1: generic_opener 67% -> 0%, diff -67% (95% CI ")
               and line.endswith("McNemar exact p=0.5 (b=2, c=0; 3 images)")
               for line in lines), lines
    # any_flag: v1 flags a, b; v2 flags b: one discordant image of 3, psi = 1/3. Connor:
    # n = (z_.975 sqrt(psi) + z_.8 sqrt(psi - 0.05^2))^2 / 0.05^2.
    psi = 1 / 3
    n = (stats.norm.ppf(0.975) * math.sqrt(psi)
         + stats.norm.ppf(0.8) * math.sqrt(psi - 0.0025)) ** 2 / 0.0025
    assert [line for line in lines if "sample size" in line] == [
        "  v2 vs v1 sample size (power 0.8, alpha 0.05, paired): any_flag: no difference "
        f"detectable with these images; {math.ceil(n)} images to detect 5% (3 images)"]
    metrics = ab_metrics(ab)
    assert {"v1.ok_rate.ci_low", "v2.flag_rate.any_flag.ci_high",
            "v2_vs_v1.generic_opener.diff", "v2_vs_v1.generic_opener.mcnemar_p",
            "v2_vs_v1.any_flag.images_needed"} <= set(metrics)
    assert metrics["v2_vs_v1.generic_opener.mcnemar_p"] == 0.5
