"""Scoring result rows against truth per prompt version and model: the structured-output
decoding, JSON prompts read by their claims declaration, failed rows, labels, pairs, confidence
separation and the per-image records. The metrics themselves are pinned in test_grounding.py;
end to end through Spark in tests/spark/test_eval_scripted.py."""

from __future__ import annotations

import doctest
import json

import pytest

from tests.unit.test_grounding import HOUSE, MUGS, TABLE
from udfs.evaluation import scores as eval_scores
from udfs.evaluation.scores import (
    all_pairs,
    paired_verdicts,
    per_image_records,
    row_claims,
    score_groups,
    structured_value,
)

V3_FIELDS = {"subject": "object", "colors": "color", "count": "count",
             "visible_features": "feature", "not_visible": "abstention", "confidence": "none"}
V3 = {"describe/v3": V3_FIELDS}


def _row(image_id, version, text=None, truth=TABLE, structured=None, status="ok", model="m",
         flags=(), **extra):
    return {"image_id": image_id, "prompt_name": "describe", "prompt_version": version,
            "model": model, "status": status, "description": text,
            "structured_json": json.dumps(structured) if structured else None,
            "guardrail_flags": list(flags), "truth": truth, **extra}


def test_structured_value_reads_table_values_back_as_json_values():
    stored = {"count": "4", "colors": '["red","blue"]', "subject": "a red table",
              "not_visible": ["drawer"], "confidence": "low", "other": "uncertain"}
    assert structured_value(json.dumps(stored)) == {
        "count": 4, "colors": ["red", "blue"], "subject": "a red table",
        "not_visible": ["drawer"], "confidence": "low", "other": "uncertain"}
    assert structured_value("not json") is None
    assert structured_value("[1, 2]") is None
    assert structured_value("") is None


def test_row_claims_reads_json_mode_rows_from_their_fields():
    stored = json.dumps({"subject": "mugs", "count": "3", "colors": '["blue"]',
                         "visible_features": ["handle"], "not_visible": ["stripe"]})
    claims = row_claims("ignored text about a car", stored, V3_FIELDS)
    assert sorted(claims.items) == ["handle", "mug"] and claims.subject_count == 3
    assert sorted(claims.abstained) == ["stripe"] and sorted(claims.colors) == ["blue"]
    assert sorted(row_claims("A red car.", None, None).items) == ["car"]
    assert row_claims("A red car.", None, V3_FIELDS).items == frozenset()


def test_groups_rates_and_failed_rows():
    rows = [
        _row("a", "v1", "A table with four legs and a chimney."),  # leg 4 vs 2 wrong; chimney
        _row("b", "v1", "Three blue mugs.", truth=MUGS),  # correct
        _row("c", "v1", None, truth=HOUSE, status="engine_error"),  # not scored, counted
        _row("a", "v2", "A table; the legs cannot be seen clearly."),  # abstain
        _row("b", "v2", "Blue mugs.", truth=MUGS),  # not stated
    ]
    v1, v2 = score_groups(rows)
    assert (v1.label, v1.prompt, v1.model, v1.failed, len(v1.rows)) == (
        "v1", "describe/v1", "m", 1, 2)
    assert [r.image_id for r in v1.rows] == ["a", "b"]
    assert v1.rates["hallucination_per_description"].estimate == 0.5
    assert v1.rates["count_wrong"].estimate == 0.5 and v1.rates["count_correct"].estimate == 0.5
    # Only the table scene has a distractor; "scope" is then defined on 1 image.
    assert v1.rates["scope_violation"].n_items == 1
    assert v2.rates["count_abstain"].estimate == 0.5
    assert v2.rates["count_not_stated"].estimate == 0.5
    assert not v1.json_mode and "json_invalid" not in v1.rates


def test_json_mode_group_scores_fields_and_counts_invalid_outputs():
    rows = [
        _row("a", "v3", '{"x": 1}', structured={
            "subject": "a table", "colors": '["red"]', "count": "1",
            "visible_features": ["two legs", "drawer"], "not_visible": ["chimney"]}),
        _row("b", "v3", "{broken", truth=MUGS, flags=["invalid_json"]),
    ]
    (v3,) = score_groups(rows, V3)
    assert v3.json_mode
    assert v3.rates["json_invalid"].estimate == 0.5
    a, b = v3.rows
    assert a.score.count_outcome == "correct" and a.score.hallucinated == ()
    assert a.score.abstained == ("chimney",)
    assert b.json_invalid and b.score.mentioned == () and b.score.count_outcome == "not_stated"


def test_json_outputs_without_a_declaration_are_refused_not_scored_empty():
    rows = [_row("a", "v7", '{"x": 1}', structured={"main": "a table"})]
    with pytest.raises(ValueError, match="describe/v7 has JSON outputs, but no claims "
                                         "declaration"):
        score_groups(rows)
    with pytest.raises(ValueError, match=r"describe/v7, image a: output field\(s\) \['main'\]"):
        score_groups(rows, {"describe/v7": V3_FIELDS})


def test_a_json_prompt_with_other_field_names_scores_like_v3():
    renamed = {"describe/v9": {"thing": "object", "tints": "color", "n": "count",
                               "seen": "feature", "unseen": "abstention"}}
    v3 = _row("a", "v3", structured={"subject": "a table", "colors": '["red"]', "count": "1",
                                     "visible_features": ["two legs", "a chimney"],
                                     "not_visible": ["drawer"], "confidence": "low"})
    v9 = _row("a", "v9", structured={"thing": "a table", "tints": '["red"]', "n": "1",
                                     "seen": ["two legs", "a chimney"], "unseen": ["drawer"]})
    (a,), (b,) = (g.rows for g in score_groups([v3, v9], {**V3, **renamed}))
    assert a.score == b.score
    assert b.score.hallucinated == ("chimney",) and b.score.count_outcome == "correct"
    assert b.score.abstained == ("drawer",)


def test_confidence_columns_separate_hallucinated_rows_next_to_the_guardrails():
    texts = [("A table with a chimney.", -3.0, True), ("A table with a door.", -2.5, False),
             ("A table with two legs.", -0.5, False), ("A table.", -0.7, True),
             ("A table and a drawer.", -0.4, False), ("A table with a window.", -2.0, False)]
    rows = [_row(str(i), "v2", t, flags=["generic_opener"] if flag else [], mean_logprob=lp,
                 min_logprob=None if i == 0 else lp - 1)
            for i, (t, lp, flag) in enumerate(texts)]
    (g,) = score_groups(rows)
    # Hallucinated (chimney, door, window): log-probs -3.0, -2.5, -2.0; grounded: -0.5, -0.7,
    # -0.4. Every hallucinated row is less likely than every grounded one: AUROC 1.
    assert g.separation["mean_logprob"].estimate == 1.0
    assert g.separation["mean_logprob"].low < 1.0  # never a certain separation
    assert g.separation["min_logprob"].n_items == 5  # row 0 has no min_logprob
    # Guardrails flagged rows 0 and 3: one of them hallucinated; one of 3 hallucinated flagged.
    assert (g.guardrails.precision.estimate, g.guardrails.recall.estimate) == (
        0.5, pytest.approx(1 / 3))
    (old,) = score_groups([_row("a", "v2", "A table.")])  # no confidence columns: none
    assert old.separation == {}


def test_labels_name_the_model_when_versions_repeat():
    rows = [_row("a", "v2", "A table.", model="m1"), _row("a", "v2", "A table.", model="m2")]
    assert [g.label for g in score_groups(rows)] == ["describe/v2 on m1", "describe/v2 on m2"]


def test_pairs_are_on_shared_images_only():
    rows = [
        _row("a", "v1", "A table with four legs."), _row("b", "v1", "Blue mugs.", truth=MUGS),
        _row("a", "v2", "A table with two legs."), _row("z", "v3", "A house.", truth=HOUSE),
    ]
    groups = score_groups(rows)
    assert [(a.label, b.label) for a, b in all_pairs(groups)] == [("v1", "v2")]
    verdicts = {v.metric: v for v in paired_verdicts(*all_pairs(groups)[0])}
    wrong = verdicts["count_wrong"]
    assert (wrong.n_images, wrong.rate_a, wrong.rate_b) == (1, 1.0, 0.0)
    assert (wrong.mcnemar.b, wrong.mcnemar.c) == (1, 0)
    assert list(verdicts)[:4] == ["hallucination_per_description", "hallucination_per_mention",
                                  "count_correct", "count_wrong"]


def test_per_image_records_are_json_safe():
    records = per_image_records(score_groups([_row("a", "v1", "A table with four legs.")]))
    assert json.loads(json.dumps(records)) == records
    assert records[0]["prompt"] == "describe/v1" and records[0]["stated_count"] == 4


def test_docstring_examples_run():
    assert doctest.testmod(eval_scores).failed == 0
