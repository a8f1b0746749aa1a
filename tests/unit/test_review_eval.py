"""The review page's A/B section: rates with intervals, verdict rows coloured by direction,
everything escaped, and the page around it still self-contained under its CSP."""

from __future__ import annotations

from jobs.review.page import CSP, PromptColumn, render_review_page
from jobs.review.verdicts import RatesColumn, render_ab_section
from tests.html_dom import Dom
from udfs.evaluation.ab import paired_verdict, rate_ci

EVIL = '<script>alert("x")</script> & "q"'
ALL, NONE = ([1, 1, 1, 1], [1, 1, 1, 1]), ([0, 0, 0, 0], [1, 1, 1, 1])


def _dom(html: str) -> Dom:
    dom = Dom()
    dom.feed(html)
    return dom


def test_every_shown_value_is_escaped():
    column = RatesColumn(EVIL, EVIL, {EVIL: rate_ci(ALL)})
    verdict = paired_verdict(EVIL, (EVIL, ALL), ("v2", NONE))
    html = render_ab_section(EVIL, [column], [verdict], notes={EVIL: EVIL}, intro=EVIL)
    assert "<script>" not in html and "&lt;script&gt;" in html
    dom = _dom(html)
    assert dom.count("tr", "ab-rate") == 1 and dom.count("tr", "ab-verdict") == 1
    assert EVIL in "".join(dom.text)


def test_rates_table_has_a_column_per_version_and_n_a_where_undefined():
    columns = [RatesColumn("v1", "describe/v1", {"a": rate_ci(ALL), "b": rate_ci(NONE)}),
               RatesColumn("v2", "describe/v2", {"a": rate_ci(NONE)})]
    dom = _dom(render_ab_section("t", columns, []))
    assert [r["data-metric"] for r in dom.having("tr", "ab-rate")] == ["a", "b"]
    assert dom.count("td", "missing") == 1
    assert "1.00" in dom.text and "0.00" in dom.text
    assert dom.count("table", "ab-verdicts") == 0  # no pairs, no verdict table


def test_verdict_rows_are_coloured_by_direction_only_when_the_interval_excludes_zero():
    fewer_errors = paired_verdict("count_wrong", ("v1", ALL), ("v2", NONE))
    less_coverage = paired_verdict("coverage", ("v1", ALL), ("v2", NONE))
    same = paired_verdict("count_abstain", ("v1", ALL), ("v2", ALL))
    dom = _dom(render_ab_section("t", [], [fewer_errors, less_coverage, same]))
    classes = {r["data-metric"]: r["class"].split() for r in dom.having("tr", "ab-verdict")}
    assert "verdict-better" in classes["count_wrong"]
    assert "verdict-worse" in classes["coverage"]
    assert not {"verdict-better", "verdict-worse"} & set(classes["count_abstain"])


def test_percent_mode_for_flag_rates():
    verdict = paired_verdict("generic_opener", ("v1", ALL), ("v2", NONE))
    html = render_ab_section("t", [RatesColumn("v1", "d", {"x": rate_ci(ALL)})], [verdict],
                             percent=True, higher_is_better=())
    assert "100%" in html and "-100%" in html and "0.12" in html  # McNemar p of 4 vs 0


def test_page_with_a_section_keeps_its_csp_and_places_the_section_before_the_prompts():
    section = render_ab_section("Grounding", [RatesColumn("v2", "d", {"x": rate_ci(ALL)})], [])
    page = render_review_page("t", [PromptColumn("describe/v2")], [], {"run": "r"}, [section])
    assert f'content="{CSP}"' in page.replace("&#x27;", "'")
    assert page.index('class="ab"') < page.index('class="summary"')
    assert "http://" not in page and "https://" not in page
