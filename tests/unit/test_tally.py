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
