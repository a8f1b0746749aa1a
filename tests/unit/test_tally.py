"""The one way result rows are counted: statuses, flags, and flag rates over ok rows."""

from udfs.outputs.tally import Tally


def test_each_flag_counts_once_per_row_and_rates_are_over_ok_rows():
    tally = Tally.of_rows([
        ("ok", ["truncated", "truncated"]), ("ok", []), ("ok", None),
        ("ok", ["refusal", "truncated"]), ("missing_file", None), ("engine_error", []),
    ])
    assert tally.statuses == {"ok": 4, "missing_file": 1, "engine_error": 1}
    assert tally.flags == {"truncated": 2, "refusal": 1}
    assert (tally.rows, tally.ok, tally.errors) == (6, 4, 2)
    assert tally.flag_rates() == {"refusal": 0.25, "truncated": 0.5}


def test_no_ok_rows_means_no_rates():
    assert Tally.of_rows([("truncated", None)]).flag_rates() == {}
    assert Tally().flag_rates() == {} and Tally().rows == 0


def test_tallies_add_up():
    a = Tally({"ok": 3, "missing_file": 1}, {"refusal": 1})
    b = Tally({"ok": 1}, {"refusal": 1, "truncated": 1})
    total = a + b
    assert total.statuses == {"ok": 4, "missing_file": 1}
    assert total.flags == {"refusal": 2, "truncated": 1}
    assert total.flag_rates() == {"refusal": 0.5, "truncated": 0.25}
    assert a.statuses == {"ok": 3, "missing_file": 1}  # the parts are unchanged
    assert total.describe_statuses() == "missing_file=1, ok=4"


def test_groups_from_one_spark_aggregation_count_like_their_rows():
    # What `groupBy("status", "guardrail_flags").count()` returns for the rows of the first test.
    groups = [("ok", ["truncated", "truncated"], 1), ("ok", [], 1), ("ok", None, 1),
              ("ok", ["refusal", "truncated"], 1), ("missing_file", None, 1), ("engine_error", [], 1)]
    assert Tally.of_groups(groups) == Tally({"ok": 4, "missing_file": 1, "engine_error": 1},
                                            {"truncated": 2, "refusal": 1})
    merged = Tally.of_groups([("ok", ["refusal"], 40), ("ok", ["refusal", "truncated"], 2)])
    assert merged.statuses == {"ok": 42} and merged.flags == {"refusal": 42, "truncated": 2}
