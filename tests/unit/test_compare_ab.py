"""``candid compare``'s verdicts from the sampled result rows: flag rates with intervals over
ok rows, McNemar per flag on the images both versions described, the printed lines and the
MLflow metric names. On Spark with a scripted engine: tests/spark/test_eval_scripted.py."""

from __future__ import annotations

from jobs.evaluation.compare import ab_lines, ab_metrics, flag_ab
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
    ab = flag_ab(RECORDS, [V1, V2])
    lines = ab_lines(ab)
    assert lines[0].startswith("  v1 rates (95% CI): ok_rate 75% (95% CI ")
    assert any(line.startswith("  v2 vs v1: generic_opener 67% -> 0%, diff -67% (95% CI ")
               and line.endswith("McNemar p=0.5 (n=3)") for line in lines), lines
    metrics = ab_metrics(ab)
    assert {"v1.ok_rate.ci_low", "v2.flag_rate.any_flag.ci_high",
            "v2_vs_v1.generic_opener.diff", "v2_vs_v1.generic_opener.mcnemar_p"} <= set(metrics)
    assert metrics["v2_vs_v1.generic_opener.mcnemar_p"] == 0.5
