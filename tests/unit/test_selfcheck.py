"""Self-check probes: the questions built from a description's claims, the yes/no parser,
and the per-row and run-level audit results."""

from __future__ import annotations

import doctest

import pytest
from scipy import stats

from udfs.evaluation.claims import extract_claims, extract_claims_json
from udfs.evaluation.selfcheck import (
    AuditResult,
    Probe,
    audit_answers,
    audit_rate_cis,
    parse_yes_no,
    probe_questions,
)

V3_FIELDS = {"subject": "object", "colors": "color", "count": "count",
             "visible_features": "feature", "not_visible": "abstention", "confidence": "none"}

DESCRIPTION = "A red table with four legs and a drawer. There is no chimney."


def test_claims_become_questions_in_a_fixed_order():
    probes = probe_questions(DESCRIPTION, n_controls=0)
    assert [(p.kind, p.claim, p.question, p.expected) for p in probes] == [
        ("item", "drawer", "Is there a drawer in this image? Answer yes or no.", "yes"),
        ("item", "leg", "Are there legs in this image? Answer yes or no.", "yes"),
        ("item", "table", "Is there a table in this image? Answer yes or no.", "yes"),
        ("color", "color:red", "Is the table red? Answer yes or no.", "yes"),
        ("count", "count:leg=4", "Are there exactly 4 legs in this image? Answer yes or no.",
         "yes"),
    ]


def test_text_and_claims_give_the_same_probes():
    assert probe_questions(DESCRIPTION, key="a") == probe_questions(
        extract_claims(DESCRIPTION), key="a")


def test_json_claims_probe_their_fields():
    claims = extract_claims_json({"subject": "mug", "colors": ["blue"], "count": 1,
                                  "visible_features": ["handle"], "not_visible": ["stripe"],
                                  "confidence": "high"}, V3_FIELDS)
    questions = [p.question for p in probe_questions(claims, n_controls=0)]
    assert questions == [
        "Is there a handle in this image? Answer yes or no.",
        "Is there a mug in this image? Answer yes or no.",
        "Is the mug blue? Answer yes or no.",
    ]


def test_singular_count_and_article_and_no_subject():
    probes = probe_questions("One armrest, orange.", n_controls=0)
    assert [p.question for p in probes] == [
        "Is there an armrest in this image? Answer yes or no.",
        "Is the main object orange? Answer yes or no.",
        "Is there exactly one armrest in this image? Answer yes or no.",
    ]


def test_default_controls_are_unclaimed_objects_picked_deterministically():
    controls = [p for p in probe_questions(DESCRIPTION, n_controls=3, seed=1, key="img-7")
                if p.kind == "control"]
    assert len(controls) == 3
    names = {p.claim.split(":")[1] for p in controls}
    assert names <= {"chair", "flower", "car", "house", "mug", "lamp"}  # never the table
    assert all(p.expected == "no" for p in controls)
    again = [p for p in probe_questions(DESCRIPTION, n_controls=3, seed=1, key="img-7")
             if p.kind == "control"]
    assert again == controls
    picks = {tuple(p.claim for p in probe_questions(DESCRIPTION, n_controls=2, key=f"img-{i}")
                   if p.kind == "control") for i in range(20)}
    assert len(picks) > 1  # the key varies them from row to row


def test_given_controls_leave_out_claimed_and_abstained_items():
    probes = probe_questions(DESCRIPTION, controls=["table", "chimney", "car", "lamp"],
                             n_controls=5)
    assert sorted(p.claim for p in probes if p.kind == "control") == ["control:car", "control:lamp"]
    assert "Is there a car in this image? Answer yes or no." in {p.question for p in probes}


@pytest.mark.parametrize(("answer", "parsed"), [
    ("Yes", "yes"), ("yes.", "yes"), ("**Yes**, there is.", "yes"), ("Yeah", "yes"),
    ("Correct.", "yes"), ("The answer is yes.", "yes"),
    ("No", "no"), ("NO.", "no"), ("No, there isn't.", "no"), ("Nope", "no"),
    ("There is no car in this image.", "no"), ("I cannot see a car, so no.", "no"),
    ("No idea.", "unclear"), ("I'm not sure.", "unclear"), ("I cannot tell.", "unclear"),
    ("Maybe.", "unclear"), ("", "unclear"), (None, "unclear"),
    ("It could be yes or no.", "unclear"),
])
def test_parse_yes_no(answer, parsed):
    assert parse_yes_no(answer) == parsed


def _probe(kind: str, claim: str) -> Probe:
    return Probe(kind, claim, f"Is there {claim}?", "no" if kind == "control" else "yes")


def test_audit_answers_records_unconfirmed_claims_and_control_yes():
    probes = [_probe("item", "table"), _probe("item", "drawer"), _probe("count", "count:leg=4"),
              _probe("color", "color:red"), _probe("control", "control:car"),
              _probe("control", "control:lamp")]
    answers = ["Yes.", "No.", "I cannot tell.", "yes", "Yes", "no"]
    result = audit_answers(probes, answers)
    assert result == AuditResult(
        n_claims=4, unconfirmed=("drawer", "count:leg=4"), denied=("drawer",),
        n_controls=2, control_yes=("control:car",),
    )


def test_audit_answers_needs_one_answer_per_probe():
    with pytest.raises(ValueError, match="expected 2"):
        audit_answers([_probe("item", "a"), _probe("item", "b")], ["yes"])


def test_audit_rates_pinned():
    rows = [
        AuditResult(4, ("drawer", "count:leg=4"), ("drawer",), 2, ("control:car",)),
        AuditResult(2, (), (), 2, ()),
        AuditResult(0, (), (), 2, ("control:mug",)),  # no claims: out of the row rate
    ]
    cis = audit_rate_cis(rows)
    assert {k: (ci.events, ci.total) for k, ci in cis.items()} == {
        "unconfirmed_per_claim": (2, 6),
        "denied_per_claim": (1, 6),
        "rows_with_unconfirmed": (1, 2),
        "control_yes_per_control": (2, 6),
    }
    # One yes/no per row: an exact share of the 2 rows with claims.
    ref = stats.binomtest(1, 2).proportion_ci(method="exact")
    rows_ci = cis["rows_with_unconfirmed"]
    assert (rows_ci.method, rows_ci.n_items) == ("clopper_pearson", 2)
    assert (rows_ci.low, rows_ci.high) == pytest.approx((ref.low, ref.high))
    # Claims nest in rows: a cluster ratio over the rows that have claims.
    assert (cis["unconfirmed_per_claim"].method, cis["unconfirmed_per_claim"].n_items) == (
        "cluster_ratio", 2)


def test_docstring_examples_run():
    import udfs.evaluation.selfcheck

    result = doctest.testmod(udfs.evaluation.selfcheck)
    assert result.attempted > 0 and result.failed == 0
