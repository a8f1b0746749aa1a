"""Human labels without Spark: the labelling page's markup and CSP, the export file's checks,
and what the labels measure (rates scaled to the population, strata, agreement, confidence).
The clicks themselves are tested in Chromium (tests/e2e/test_labelling_browser.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime, timezone

import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from jobs.labels.export_file import LabelFileError, parse_export
from jobs.labels.measures import (
    LabelledRow,
    audit_agreement,
    confidence_separation,
    guardrail_agreement,
    kind_estimates,
    signal_agreement,
    stratum_scores,
)
from jobs.labels.report import (
    LabelsReport,
    ScoreSources,
    agreement_text,
    auroc_text,
    group_names,
    score_lines,
    score_metrics,
)
from jobs.review.page import (
    LabelSet,
    PromptColumn,
    PromptOutput,
    ResultKey,
    ReviewRow,
    render_review_page,
)
from tests.html_dom import Dom

EVIL = '<script>alert("x")</script>'
LABEL_SET = LabelSet(selection=f"describe/v2 on m {EVIL}", results_table="/t/results",
                     sample="3 of the 10 ok rows, drawn at random (seed 0)")


def _key(image_id: str, fingerprint: str | None = "fp1") -> ResultKey:
    return ResultKey(image_id, "describe", "v2", "m", fingerprint)


def _labelling_page() -> str:
    rows = [
        ReviewRow("a", "a.jpg", {"describe/v2": PromptOutput("A mug.", key=_key("a"))}),
        ReviewRow("b", "b.jpg", {"describe/v2": PromptOutput(EVIL, key=_key("b", None))}),
        ReviewRow("c", "c.jpg", {"describe/v2": PromptOutput(None, status="decode_error",
                                                             key=_key("c"))}),
        ReviewRow("d", "d.jpg", {"describe/v2": PromptOutput("No key.")}),
    ]
    return render_review_page("t", [PromptColumn("describe/v2")], rows, {}, label_set=LABEL_SET)


def _dom(page: str) -> Dom:
    dom = Dom()
    dom.feed(page)
    return dom


# --- the labelling page -----------------------------------------------------------------------


def test_a_plain_review_page_has_no_script_and_no_buttons():
    row = ReviewRow("a", "a.jpg", {"v2": PromptOutput("x", key=_key("a"))})
    page = render_review_page("t", [PromptColumn("v2")], [row], {})
    assert "<script" not in page and "script-src" not in page and 'class="verdict"' not in page


def test_verdict_buttons_only_on_ok_outputs_that_have_a_result_key():
    dom = _dom(_labelling_page())
    keyed = [json.loads(c["data-label-key"]) for c in dom.having("td", "output")
             if "data-label-key" in c]
    assert keyed == [["a", "describe", "v2", "m", "fp1"], ["b", "describe", "v2", "m", None]]
    buttons = [b["data-verdict"] for b in dom.having("button", "verdict")]
    assert buttons == ["correct", "unreadable", "invented_feature", "wrong_count",
                       "out_of_scope"] * 2
    assert all(b["aria-pressed"] == "false" and b["title"] for b in dom.having("button", "verdict"))


def test_the_only_script_is_allowed_by_its_hash_and_nothing_else_runs():
    page = _labelling_page()
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert len(scripts) == 1 and page.count("<script") == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    csp = csp.replace("&#x27;", "'")
    assert csp == ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                   f"script-src 'sha256-{digest}'")
    assert "&lt;script&gt;" in page  # model text escaped, in cells and in the panel attributes


def test_the_panel_names_the_label_set_the_sample_and_counts_the_outputs():
    dom = _dom(_labelling_page())
    (panel,) = dom.having("section", "labelling")
    assert panel["data-label-set"] == LABEL_SET.id and len(LABEL_SET.id) == 12
    assert panel["data-selection"] == LABEL_SET.selection
    assert panel["data-results-table"] == "/t/results" and panel["data-sample"] == LABEL_SET.sample
    assert "0 of 2 outputs labelled" in "".join(dom.text)
    assert dom.having("input") == [{"id": "reviewer", "type": "text", "size": "24",
                                     "autocomplete": "name", "placeholder": "your name"}]


def test_the_label_set_id_is_stable_and_tells_pages_apart():
    same = LabelSet(LABEL_SET.selection, LABEL_SET.results_table, LABEL_SET.sample)
    other = LabelSet(LABEL_SET.selection, LABEL_SET.results_table, "seed 1")
    assert same.id == LABEL_SET.id != other.id


# --- the export file --------------------------------------------------------------------------


def _export(**changes) -> dict:
    label = {"image_id": "a", "prompt_name": "describe", "prompt_version": "v2", "model": "m",
             "run_fingerprint": "fp1", "verdict": "wrong_count", "reviewer": "Zoë",
             "labelled_at": "2026-12-06T10:00:00.000Z"}
    doc = {"format": "candid-labels", "format_version": 1, "label_set": "abc",
           "selection": "s", "results_table": "/t/results", "sample": "all",
           "reviewer": "Zoë", "exported_at": "2026-12-06T10:05:00.000Z", "labels": [label]}
    for key, value in changes.items():
        if key.startswith("label_"):
            label[key.removeprefix("label_")] = value
        else:
            doc[key] = value
    return doc


def test_a_valid_export_parses_with_utc_times():
    export = parse_export(_export(), "f.json")
    (label,) = export.labels
    assert label.key == ("a", "describe", "v2", "m", "fp1", "Zoë")
    assert label.verdict == "wrong_count"
    assert label.labelled_at == datetime(2026, 12, 6, 10, 0, tzinfo=timezone.utc)
    assert export.results_table == "/t/results" and export.label_set == "abc"


def test_a_repeated_label_keeps_the_latest_verdict():
    doc = _export()
    later = {**doc["labels"][0], "verdict": "correct", "labelled_at": "2026-12-06T11:00:00+01:00"}
    latest = {**doc["labels"][0], "verdict": "unreadable", "labelled_at": "2026-12-06T10:30:00Z"}
    doc["labels"] += [later, latest]
    (label,) = parse_export(doc).labels
    assert label.verdict == "unreadable"  # 11:00+01:00 is 10:00 UTC: not later


@pytest.mark.parametrize(("changes", "message"), [
    ({"format": "something"}, "not a Candid label export"),
    ({"format_version": 2}, "format_version 2"),
    ({"labels": []}, "non-empty list"),
    ({"label_verdict": "meh"}, r"labels\[0\]: unknown verdict 'meh'"),
    ({"label_reviewer": "  "}, r"labels\[0\]: reviewer is empty"),
    ({"label_image_id": ""}, r"labels\[0\]: image_id must be non-empty text"),
    ({"label_run_fingerprint": 3}, "run_fingerprint must be text or null"),
    ({"label_labelled_at": "yesterday"}, "expected an ISO 8601 time"),
    ({"label_labelled_at": "2026-12-06T10:00:00"}, "has no time zone"),
])
def test_malformed_exports_name_the_problem(changes, message):
    with pytest.raises(LabelFileError, match=message):
        parse_export(_export(**changes), "f.json")


def test_a_null_fingerprint_is_allowed():
    (label,) = parse_export(_export(label_run_fingerprint=None)).labels
    assert label.run_fingerprint is None


# --- what the labels measure ------------------------------------------------------------------


def _rows(verdicts: list[str], **fields) -> list[LabelledRow]:
    return [LabelledRow(verdict=v, low_visibility=fields.get("low"), flagged=False)
            for v in verdicts]


def _exact(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return ci.low, ci.high


def test_rates_are_scaled_to_the_population_with_clopper_pearson_bounds():
    estimates = kind_estimates(["correct"] * 36 + ["invented_feature"] * 3 + ["unreadable"], 5000)
    invented = estimates["invented_feature"]
    assert (invented.rate.events, invented.rate.n_items) == (3, 40)
    assert (invented.rate.low, invented.rate.high) == pytest.approx(_exact(3, 40), abs=1e-9)
    assert invented.rows == pytest.approx(375.0)
    low, high = _exact(3, 40)
    assert (invented.rows_low, invented.rows_high) == pytest.approx((5000 * low, 5000 * high))
    assert estimates["any_error"].rate.events == 4
    none = estimates["wrong_count"]
    # 0 of 40: not 0..0 but 0..1-0.025^(1/40) of the rows.
    assert none.rows == 0 and none.rows_low == 0
    assert none.rows_high == pytest.approx(5000 * (1 - 0.025 ** (1 / 40)))


def test_strata_follow_low_visibility_with_their_own_populations():
    rows = (_rows(["correct"] * 8 + ["invented_feature"] * 2, low=False)
            + _rows(["invented_feature"] * 3 + ["correct"], low=True))
    strata = {s.name: s for s in stratum_scores(rows, {False: 800, True: 200, None: 5})}
    assert list(strata) == ["all", "low visibility", "normal visibility", "visibility unknown"]
    assert strata["all"].population == 1005 and strata["all"].labelled == 14
    low = strata["low visibility"].kinds["invented_feature"]
    assert (low.rate.events, low.rate.n_items, low.rows) == (3, 4, 150.0)
    normal = strata["normal visibility"].kinds["invented_feature"]
    assert (normal.rate.events, normal.rate.n_items, normal.rows) == (2, 10, 160.0)
    unknown = strata["visibility unknown"]
    assert unknown.labelled == 0
    assert unknown.kinds["any_error"].rate is None and unknown.kinds["any_error"].rows is None


def test_guardrails_are_compared_with_any_error_and_the_audit_with_invented_features():
    rows = [
        LabelledRow("invented_feature", None, flagged=True, audit_unconfirmed=True),
        LabelledRow("wrong_count", None, flagged=True, audit_unconfirmed=False),
        LabelledRow("correct", None, flagged=False, audit_unconfirmed=False),
        LabelledRow("correct", None, flagged=True, audit_unconfirmed=None),
        LabelledRow("unreadable", None, flagged=False, audit_unconfirmed=True),
    ]
    guard = guardrail_agreement(rows)
    # Errors: rows 0, 1, 4; flagged: rows 0, 1, 3.
    assert (guard.n, guard.flags.flagged, guard.flags.labelled, guard.flags.both) == (5, 3, 3, 2)
    human, flagged = [1, 1, 0, 0, 1], [1, 1, 0, 1, 0]
    assert guard.kappa.kappa == pytest.approx(cohen_kappa_score(human, flagged), abs=1e-12)
    assert guard.kappa.low < guard.kappa.kappa < guard.kappa.high
    precision = guard.flags.precision
    assert (precision.estimate, precision.low, precision.high) == pytest.approx(
        (2 / 3, *_exact(2, 3)))
    audit = audit_agreement(rows)
    assert audit.n == 4  # the row without an audit is left out
    # Invented features among audited rows: row 0; unconfirmed: rows 0 and 4.
    assert (audit.flags.flagged, audit.flags.labelled, audit.flags.both) == (2, 1, 1)
    assert audit.flags.recall.estimate == 1.0
    assert audit.flags.recall.low == pytest.approx(_exact(1, 1)[0])  # 0.025 for 1 of 1
    assert audit_agreement(rows[3:4]) is None


def test_a_signal_that_never_fires_has_no_precision_and_a_real_kappa_interval():
    a = signal_agreement([True, True, False, False, False], [False] * 5)
    assert a.flags.precision is None and a.flags.recall.estimate == 0.0
    assert a.kappa.kappa == 0.0 and a.kappa.low < 0 < a.kappa.high


def test_lower_confidence_for_invented_features_gives_an_auroc_above_one_half():
    invented, correct = (-2.0, -1.5, -0.9), (-1.0, -0.5, -0.2, -0.1)
    rows = [LabelledRow("invented_feature", None, False, confidence={"mean_logprob": lp})
            for lp in invented]
    rows += [LabelledRow("correct", None, False, confidence={"mean_logprob": lp})
             for lp in correct]
    rows += [LabelledRow("correct", None, False, confidence={"mean_logprob": None}),
             LabelledRow("wrong_count", None, False, confidence={"mean_logprob": -9.0})]
    separation = confidence_separation(rows, ["mean_logprob"])["mean_logprob"]
    assert (separation.invented, separation.correct) == (3, 4)  # no score, other kinds: out
    reference = roc_auc_score([1] * 3 + [0] * 4, [-v for v in invented + correct])
    assert separation.auroc.estimate == pytest.approx(reference) == pytest.approx(11 / 12)
    assert separation.auroc.low < 11 / 12 < separation.auroc.high
    assert confidence_separation(rows[3:7], ["mean_logprob"])["mean_logprob"].auroc is None


# --- the report -------------------------------------------------------------------------------


def _report(rows: list[LabelledRow], fingerprints=("fp1",)) -> LabelsReport:
    from jobs.labels.measures import GroupScore

    groups = [GroupScore("describe", "v2", "m", fp, len(rows), 1000, 1,
                         stratum_scores(rows, {False: 1000}), guardrail_agreement(rows),
                         audit_agreement(rows), confidence_separation(rows, []))
              for fp in fingerprints]
    return LabelsReport(ScoreSources("/t/r", "/t/r_labels"), "run1", len(rows), len(rows), 0,
                        ["Zoë"], False, [], groups)


def test_report_lines_say_not_estimable_instead_of_a_zero_width_interval():
    rows = _rows(["correct"] * 10, low=False)  # every row correct, nothing flagged
    text = "\n".join(score_lines(_report(rows)))
    high = 1 - 0.025 ** (1 / 10)  # Clopper-Pearson's upper bound for 0 of 10
    assert (f"invented feature: 0.0% (95% CI 0.0%..{high:.1%}, 0 of 10): about 0 rows "
            f"(0..{1000 * high:,.0f}) of 1,000") in text
    assert ("kappa undefined, not estimable (both sides gave one answer to all 10 rows); "
            "precision not estimable (nothing flagged); recall not estimable (the person "
            "marked no row)") in text
    assert "no self-check audit table" in text
    perfect = signal_agreement([True, False, True], [True, False, True])
    assert agreement_text(perfect).startswith("kappa 1.00 (95% CI ")
    assert "..1.00, n=3); precision 100.0% (95% CI " in agreement_text(perfect)
    rows = [LabelledRow(v, None, False, confidence={"c": s})
            for v, s in (("invented_feature", -3.0), ("invented_feature", -4.0),
                         ("correct", -1.0), ("correct", -2.0))]
    # Perfect separation: the smaller class (2 rows) is the effective sample, low 0.025^(1/2).
    text = auroc_text(confidence_separation(rows, ["c"])["c"])
    assert text == (f"AUROC 1.00 (95% CI {0.025 ** 0.5:.2f}..1.00, 2 invented vs 2 correct)")
    only_correct = confidence_separation(rows[2:], ["c"])["c"]
    assert auroc_text(only_correct) == "not estimable (0 invented vs 2 correct)"


def test_metrics_carry_bounds_and_leave_out_what_cannot_be_estimated():
    rows = _rows(["correct"] * 8 + ["wrong_count"] * 2, low=False)
    metrics = score_metrics(_report(rows).groups)
    assert metrics["describe.v2.all.wrong_count.rate"] == pytest.approx(0.2)
    assert metrics["describe.v2.all.wrong_count.rows"] == pytest.approx(200.0)
    assert metrics["describe.v2.all.wrong_count.rows.ci_high"] == pytest.approx(
        1000 * _exact(2, 10)[1])
    assert metrics["describe.v2.normal_visibility.any_error.rate.ci_low"] == pytest.approx(
        _exact(2, 10)[0])
    # The guardrails never fired: kappa is 0 with an interval; precision is not estimable.
    assert metrics["describe.v2.guardrails.kappa"] == 0.0
    assert metrics["describe.v2.guardrails.kappa.ci_low"] < 0 < metrics[
        "describe.v2.guardrails.kappa.ci_high"]
    assert "describe.v2.guardrails.precision" not in metrics
    assert metrics["describe.v2.guardrails.recall"] == 0.0
    assert metrics["describe.v2.guardrails.recall.ci_high"] == pytest.approx(1 - 0.025 ** 0.5)
    assert metrics["describe.v2.labelled"] == 10


def test_group_names_stay_unique_when_two_fingerprints_share_a_version():
    report = _report(_rows(["correct"]), fingerprints=("aaaaaaaa1111", "bbbbbbbb2222"))
    assert group_names(report.groups) == ["describe.v2.aaaaaaaa.m", "describe.v2.bbbbbbbb.m"]
