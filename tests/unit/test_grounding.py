"""Grounding: claim extraction (text, and JSON by a prompt's claims declaration), per-row
scoring against truth, and the per-row metrics, each pinned by scripted descriptions whose
hallucinations, count errors, abstentions and scope violations the test chooses (expected rates
worked out by hand in the comments)."""

from __future__ import annotations

import doctest
import json

import pytest

from udfs.evaluation.claims import extract_claims, extract_claims_json
from udfs.evaluation.grounding import ROW_METRICS, score_claims
from udfs.evaluation.intervals import mcnemar

# v3's claims declaration, as conf/prompts/describe_v3.yaml states it.
V3_FIELDS = {"subject": "object", "colors": "color", "count": "count",
             "visible_features": "feature", "not_visible": "abstention", "confidence": "none"}


def score_text(text, truth):
    return score_claims(extract_claims(text), truth)


def score_json(value, truth):
    return score_claims(extract_claims_json(value, V3_FIELDS), truth)


def metric_arrays(scores, name):
    """(numerators, denominators) of ROW_METRICS[name] over the rows where it is defined."""
    pairs = [p for p in map(ROW_METRICS[name], scores) if p is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def rates(scores):
    """Every ROW_METRICS rate over ``scores`` as (numerator, denominator) sums."""
    return {name: tuple(map(sum, metric_arrays(scores, name))) for name in ROW_METRICS}


def values(scores):
    """Every defined ROW_METRICS rate over ``scores``; None where no row defines it."""
    return {k: (n / d if d else None) for k, (n, d) in rates(scores).items()}

# Hand-written truths in the shape udfs.evaluation.scenes produces.
TABLE = {
    "subject": "table", "colors": ["brown", "red"], "count": 2, "count_of": "leg",
    "count_kind": "parts", "present": ["drawer", "leg"],
    "absent": ["chair", "flower", "house", "lamp", "mug", "chimney", "door", "handle",
               "window", "stripe", "petal"],
    "distractor": "car", "distractor_edge": "right",
    "distractor_items": ["car", "headlight", "wheel"],
    "scene_colors": ["black", "brown", "red", "white", "yellow"],
}
MUGS = {
    "subject": "mug", "colors": ["blue"], "count": 3, "count_of": "mug",
    "count_kind": "instances", "present": ["handle"],
    "absent": ["car", "chair", "flower", "house", "lamp", "table", "leg", "stripe", "wheel"],
    "distractor": None, "distractor_edge": None, "distractor_items": [],
    "scene_colors": ["blue", "white"],
}
HOUSE = {
    "subject": "house", "colors": ["grey", "red", "yellow"], "count": 4, "count_of": "window",
    "count_kind": "parts", "present": ["door", "roof", "window"],
    "absent": ["car", "chair", "lamp", "mug", "table", "chimney", "leg", "wheel", "handle"],
    "distractor": "flower", "distractor_edge": "left",
    "distractor_items": ["flower", "petal", "stem"],
    "scene_colors": ["green", "grey", "pink", "red", "white", "yellow"],
}
TRUTHS = [TABLE, TABLE, MUGS, HOUSE, HOUSE]

# v1-like outputs; the planned outcome of each row is in its comment.
V1_TEXTS = [
    # leg count wrong (4 vs 2); wheels belong to the car: scope; coverage 2/2.
    "A red table with four legs, a drawer and two wheels.",
    # chimney hallucinated; no count; coverage 0/2.
    "A brown table with a chimney.",
    # count correct (3 mugs); stripe hallucinated; purple drawn nowhere; coverage 1/1.
    "Three blue mugs with handles and a purple stripe.",
    # several windows: abstain; the flower is the distractor: scope; coverage 3/3.
    "A house with several windows, a door and a red roof next to a flower.",
    # windows under "cannot be seen": abstain; "no chimney" is not a claim; coverage 0/3.
    "A grey house. The number of windows cannot be seen clearly, there is no chimney.",
]
# v2-like outputs on the same images.
V2_TEXTS = [
    "A red table with two legs and a drawer.",  # correct count; coverage 2/2
    "A brown table; the legs cannot be seen clearly.",  # abstain; coverage 0/2
    "Three blue mugs with handles.",  # correct; coverage 1/1
    "A house with four windows and a door.",  # correct; coverage 2/3
    "A small building.",  # building = house; count not stated; coverage 0/3
]


def _v1():
    return [score_text(t, truth) for t, truth in zip(V1_TEXTS, TRUTHS, strict=True)]


def _v2():
    return [score_text(t, truth) for t, truth in zip(V2_TEXTS, TRUTHS, strict=True)]


# --- per-row scores ---------------------------------------------------------------------------


def test_row_scores_of_the_scripted_v1_outputs():
    s = _v1()
    assert s[0].supported == ("drawer", "leg", "table")
    assert s[0].scope_items == ("wheel",) and s[0].hallucinated == ()
    assert (s[0].count_outcome, s[0].stated_count, s[0].true_count) == ("wrong", 4, 2)
    assert s[1].hallucinated == ("chimney",) and s[1].count_outcome == "not_stated"
    assert s[1].coverage == 0.0
    assert s[2].hallucinated == ("stripe",) and s[2].count_outcome == "correct"
    assert s[2].colors_mentioned == ("blue", "purple") and s[2].colors_wrong == ("purple",)
    assert s[3].scope_items == ("flower",) and s[3].count_outcome == "abstain"
    assert s[3].covered == ("door", "roof", "window") and s[3].coverage == 1.0
    assert s[4].hallucinated == () and s[4].abstained == ("chimney", "window")
    assert s[4].count_outcome == "abstain" and s[4].coverage == 0.0
    assert [r.scope_violation for r in s] == [True, False, False, True, False]
    assert [r.has_distractor for r in s] == [True, True, False, True, True]


def test_row_metrics_pin_every_rate_for_v1():
    r = values(_v1())
    # Judged mentions: 3 (table, leg, drawer) + 2 (table, chimney) + 3 (mug, handle, stripe)
    # + 4 (house, window, door, roof) + 1 (house) = 13; hallucinated: chimney, stripe = 2.
    assert rates(_v1())["hallucination_per_mention"] == (2, 13)
    assert r["hallucination_per_mention"] == pytest.approx(2 / 13)
    assert r["hallucination_per_description"] == pytest.approx(2 / 5)
    assert r["count_correct"] == pytest.approx(1 / 5)
    assert r["count_wrong"] == pytest.approx(1 / 5)
    assert r["count_abstain"] == pytest.approx(2 / 5)
    assert r["count_not_stated"] == pytest.approx(1 / 5)
    assert r["count_accuracy_when_stated"] == pytest.approx(1 / 2)
    # Four rows have a distractor (both tables, both houses); rows 1 and 4 describe it.
    assert r["scope_violation"] == pytest.approx(2 / 4)
    assert r["coverage"] == pytest.approx((1 + 0 + 1 + 1 + 0) / 5)
    # Colour mentions: red, brown, blue, purple, red, grey = 6; purple is drawn nowhere.
    assert r["color_error"] == pytest.approx(1 / 6)
    assert r["subject_named"] == 1.0


def test_row_metrics_pin_every_rate_for_v2():
    r = values(_v2())
    # Judged: 3 + 1 + 2 + 3 + 1 = 10, none hallucinated.
    assert r["hallucination_per_mention"] == 0.0
    assert r["hallucination_per_description"] == 0.0
    assert (r["count_correct"], r["count_wrong"]) == (pytest.approx(3 / 5), 0.0)
    assert r["count_abstain"] == pytest.approx(1 / 5)
    assert r["count_not_stated"] == pytest.approx(1 / 5)
    assert r["count_accuracy_when_stated"] == 1.0
    assert r["scope_violation"] == 0.0
    assert r["coverage"] == pytest.approx((1 + 0 + 1 + 2 / 3 + 0) / 5)
    assert r["color_error"] == 0.0


def test_undefined_rates_have_no_denominator():
    # Only the mug scene: no distractor, so the scope rate has no denominator.
    r = rates([score_text("A mug.", MUGS)])
    assert r["scope_violation"] == (0, 0)
    assert r["count_accuracy_when_stated"] == (0, 0)  # nothing stated


def test_metric_arrays_feed_a_paired_test():
    # count_correct per image, v1 vs v2: [0,0,1,0,0] vs [1,0,1,1,0] -> b = 0, c = 2.
    a, _ = metric_arrays(_v1(), "count_correct")
    b, _ = metric_arrays(_v2(), "count_correct")
    assert a == [0, 0, 1, 0, 0] and b == [1, 0, 1, 1, 0]
    result = mcnemar([bool(x) for x in a], [bool(x) for x in b])
    assert (result.b, result.c, result.p_value) == (0, 2, 0.5)  # 2 * C(2,0) / 2^2
    # Scope is defined only on the four distractor scenes, the same ones in both versions.
    assert metric_arrays(_v1(), "scope_violation") == ([1, 0, 1, 0], [1, 1, 1, 1])
    assert len(metric_arrays(_v2(), "scope_violation")[0]) == 4


def test_known_word_the_truth_does_not_judge_stays_out_of_the_rates():
    truth = {**TABLE, "absent": ["chair"]}  # says nothing about lamps
    s = score_text("A table next to a lamp and a chair.", truth)
    assert s.unjudged == ("lamp",)
    assert s.hallucinated == ("chair",) and s.supported == ("table",)
    r = rates([s])["hallucination_per_mention"]
    assert r == (1, 2)  # the lamp is in neither


def test_distractor_feature_also_on_the_subject_is_not_a_scope_violation():
    truth = {**HOUSE, "distractor": "car", "distractor_items": ["car", "wheel", "window"],
             "absent": ["chair", "lamp", "mug", "table", "chimney", "leg", "handle"]}
    s = score_text("A house with four windows.", truth)
    assert s.scope_items == () and s.supported == ("house", "window")
    assert score_text("A house next to a car.", truth).scope_items == ("car",)


def test_row_record_is_json_safe():
    record = _v1()[0].to_record()
    assert json.loads(json.dumps(record))["scope_items"] == ["wheel"]
    assert record["scope_violation"] is True and record["coverage"] == 1.0


def test_missing_truth_key_is_named():
    bad = {k: v for k, v in TABLE.items() if k != "count_of"}
    with pytest.raises(KeyError, match="count_of"):
        score_text("A table.", bad)


def test_empty_or_missing_description_claims_nothing():
    for text in ("", None, "   "):
        s = score_text(text, TABLE)
        assert s.mentioned == () and s.count_outcome == "not_stated" and s.coverage == 0.0


# --- JSON mode --------------------------------------------------------------------------------


def _v3(**fields):
    base = {"subject": "mugs", "colors": ["blue"], "count": 3, "visible_features": [],
            "not_visible": [], "confidence": "medium"}
    return {**base, **fields}


def test_json_count_field_decides_instance_scenes():
    assert score_json(_v3(count=3), MUGS).count_outcome == "correct"
    assert score_json(_v3(count=2), MUGS).count_outcome == "wrong"
    uncertain = score_json(_v3(count="uncertain", subject="three mugs"), MUGS)
    assert uncertain.count_outcome == "abstain"  # the field wins over the subject text
    assert score_json(_v3(count=True), MUGS).count_outcome == "not_stated"  # a bool is no count


def test_json_not_visible_is_abstention_not_hallucination():
    s = score_json(_v3(visible_features=["handle"], not_visible=["stripe"],
                       colors=["blue", "purple"]), MUGS)
    assert s.mentioned == ("handle", "mug") and s.hallucinated == ()
    assert s.abstained == ("stripe",)
    assert s.colors_wrong == ("purple",) and s.coverage == 1.0
    listed = score_json(_v3(visible_features=["handle", "red stripe"]), MUGS)
    assert listed.hallucinated == ("stripe",) and listed.colors_wrong == ("red",)


def test_json_part_scenes_count_from_the_features():
    # count = 1 is the number of tables, not of legs: legs come from the features.
    value = {"subject": "table", "colors": "not_visible", "count": 1,
             "visible_features": ["4 legs", "wheels"], "not_visible": ["drawer"],
             "confidence": "low"}
    s = score_json(value, TABLE)
    assert (s.count_outcome, s.stated_count) == ("wrong", 4)
    assert s.scope_items == ("wheel",) and s.abstained == ("drawer",)
    assert s.colors_mentioned == () and s.coverage == 0.5
    hidden = score_json({**value, "visible_features": [], "not_visible": ["legs"]}, TABLE)
    assert hidden.count_outcome == "abstain"
    silent = score_json({**value, "visible_features": ["drawer"]}, TABLE)
    assert silent.count_outcome == "not_stated"


def test_json_rates_pinned():
    rows = [
        score_json(_v3(count=3, visible_features=["handle"]), MUGS),  # correct, covered
        score_json(_v3(count="uncertain", not_visible=["handle"]), MUGS),  # abstain
        score_json(_v3(count=5, visible_features=["stripe"]), MUGS),  # wrong, hallucination
        score_json(None, MUGS),  # did not parse: claims nothing
    ]
    r = values(rows)
    assert (r["count_correct"], r["count_wrong"], r["count_abstain"], r["count_not_stated"]) == (
        0.25, 0.25, 0.25, 0.25)
    # Judged: mug+handle, mug, mug+stripe, nothing = 5; hallucinated: stripe.
    assert r["hallucination_per_mention"] == pytest.approx(1 / 5)
    assert r["hallucination_per_description"] == 0.25
    assert r["coverage"] == 0.25
    assert r["subject_named"] == 0.75


def test_json_bad_values_are_ignored_not_fatal():
    c = extract_claims_json({"subject": 5, "colors": [1, "red"], "visible_features": "legs",
                             "not_visible": None, "count": 2.5}, V3_FIELDS)
    assert c.items == frozenset({"leg"}) and c.colors == frozenset({"red"})
    assert c.subject_count is None and not c.subject_count_uncertain
    # Any string in a count field declines to count (the schema allows "uncertain").
    assert extract_claims_json({"count": "lots"}, V3_FIELDS).subject_count_uncertain
    assert extract_claims_json("not a dict", V3_FIELDS) == extract_claims_json(None, V3_FIELDS)


def test_json_output_field_the_declaration_does_not_name_is_refused():
    with pytest.raises(ValueError, match=r"output field\(s\) \['shape'\] are not in the prompt's"):
        extract_claims_json({"subject": "a mug", "shape": "round"}, V3_FIELDS)


# Another JSON prompt version whose fields have other names: the same claims through its own
# declaration, none of them lost.
RENAMED_FIELDS = {"main_object": "object", "hues": "color", "how_many": "count",
                  "parts_seen": "feature", "parts_hidden": "abstention", "sure": "none"}


def test_a_json_prompt_with_other_field_names_yields_the_same_claims():
    v3 = _v3(subject="three blue mugs", colors=["blue", "red"], count=3,
             visible_features=["handle", "a stripe"], not_visible=["leg"])
    renamed = {"main_object": v3["subject"], "hues": v3["colors"], "how_many": v3["count"],
               "parts_seen": v3["visible_features"], "parts_hidden": v3["not_visible"],
               "sure": "high"}
    claims = extract_claims_json(renamed, RENAMED_FIELDS)
    assert claims == extract_claims_json(v3, V3_FIELDS)
    assert sorted(claims.items) == ["handle", "mug", "stripe"]
    assert (sorted(claims.colors), claims.abstained, claims.subject, claims.subject_count) == (
        ["blue", "red"], frozenset({"leg"}), "mug", 3)
    s = score_claims(claims, MUGS)
    assert s.hallucinated == ("stripe",) and s.count_outcome == "correct"
    # Read with v3's declaration instead, the renamed output is refused, not scored as empty.
    with pytest.raises(ValueError, match="not in the prompt's claims declaration"):
        extract_claims_json(renamed, V3_FIELDS)


# --- claim extraction -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "items"), [
    ("An automobile with two tyres.", {"car", "wheel"}),
    ("A pink blossom on a stalk, with leaves, in a vase.", {"flower", "stem", "leaf", "pot"}),
    ("A desk lamp with a lampshade.", {"lamp", "shade"}),  # not a desk
    ("A table lamp.", {"lamp"}),
    ("A lamp-shade and a light bulb.", {"shade", "bulb"}),
    ("A shade of blue on the wall.", set()),  # a tone, not a lampshade
    ("A wooden desk with drawers.", {"table", "drawer"}),
    ("A cottage with a chimney, panes and a doorway.", {"house", "chimney", "window", "door"}),
    ("A teacup with a striped band.", {"mug", "stripe"}),
    ("An armchair with a cushion and a backrest.", {"chair", "cushion", "backrest"}),
    ("A desk lamp with an adjustable arm.", {"lamp"}),  # "arm" is not an armrest
    ("A pale light on a tablet.", set()),  # no vocabulary word at all
])
def test_synonyms_map_to_vocabulary_items(text, items):
    assert extract_claims(text).items == items


@pytest.mark.parametrize(("text", "colors"), [
    ("A crimson car.", {"red"}),
    ("A gray and silver mug.", {"grey"}),
    ("A reddish-brown table.", {"red", "brown"}),
    ("A navy and golden lamp.", {"blue", "yellow"}),
    ("A violet flower with a lime stem.", {"purple", "green"}),
    ("The colour cannot be seen; it is not red.", set()),
    ("A red mug, not blue.", {"red"}),
])
def test_colour_words(text, colors):
    assert extract_claims(text).colors == colors


@pytest.mark.parametrize(("text", "claimed", "abstained"), [
    ("A house with no chimney.", {"house"}, {"chimney"}),
    ("A house without a chimney or a door.", {"house"}, {"chimney", "door"}),
    ("The mug has no handle.", {"mug"}, {"handle"}),  # the mug is still claimed
    ("The legs cannot be seen clearly.", set(), {"leg"}),
    ("A mug whose handle is not visible.", {"mug"}, {"handle"}),
    ("It is unclear whether there is a door.", set(), {"door"}),
    ("I can't see a chimney, but there is a roof.", {"roof"}, {"chimney"}),
    ("A house, possibly with a chimney.", {"house", "chimney"}, set()),  # a hedge still claims
    ("A drawer. No drawer.", {"drawer"}, set()),  # claimed once is claimed
])
def test_negation_and_uncertainty(text, claimed, abstained):
    c = extract_claims(text)
    assert (c.items, c.abstained) == (claimed, abstained)


@pytest.mark.parametrize(("text", "counts", "count_abstained", "generic"), [
    ("A table with four legs.", {"leg": 4}, set(), False),
    ("A table with 3 wooden legs.", {"leg": 3}, set(), False),
    ("A four-legged table.", {"leg": 4}, set(), False),
    ("A 5-petalled flower.", {"petal": 5}, set(), False),
    ("Two table legs.", {"leg": 2}, set(), False),  # the compound's last noun is counted
    ("A pair of wheels.", {"wheel": 2}, set(), False),
    ("A single mug.", {"mug": 1}, set(), False),
    ("One of the legs is red.", {}, set(), False),
    ("A mug.", {}, set(), False),  # an article is not a count
    ("Three or four legs.", {}, {"leg"}, False),
    ("A flower with several petals.", {}, {"petal"}, False),
    ("A few windows.", {}, {"window"}, False),
    ("Some of the petals are pink.", {}, set(), False),
    ("The legs cannot be counted.", {}, {"leg"}, False),
    ("It is impossible to count them.", {}, set(), True),
    ("A two-tone mug.", {}, set(), False),  # a hyphenated attribute, not a count
    ("A table 2 m long.", {}, set(), False),  # a measure
    ("Six petals and two leaves.", {"petal": 6, "leaf": 2}, set(), False),
    ("Not four legs.", {}, {"leg"}, False),
])
def test_count_claims(text, counts, count_abstained, generic):
    c = extract_claims(text)
    assert dict(c.counts) == counts
    assert c.count_abstained == count_abstained
    assert c.generic_count_abstention is generic


def test_generic_count_abstention_abstains_for_the_counted_item():
    s = score_text("A flower. It is impossible to count them.", {
        "subject": "flower", "count": 6, "count_of": "petal", "count_kind": "parts",
        "present": ["petal", "stem"], "absent": ["car"]})
    assert s.count_outcome == "abstain"


def test_a_stated_count_wins_over_an_abstention():
    s = score_text("Two legs; the legs cannot be seen clearly.", TABLE)
    assert (s.count_outcome, s.stated_count) == ("correct", 2)


def test_subject_is_the_first_object_named():
    assert extract_claims("Legs of a chair beside a table.").subject == "chair"
    assert extract_claims("Some legs.").subject is None


def test_docstring_examples_run():
    import udfs.evaluation.claims

    result = doctest.testmod(udfs.evaluation.claims)
    assert result.attempted > 0 and result.failed == 0
