"""The review, compare and eval pages are readable at 1280 px, checked in headless Chromium on
pages full of what breaks layouts: 200-character unbroken tokens (in outputs, ids, paths,
facts, labels), JSON-mode outputs, and non-ASCII text.

From the laid-out DOM: no cell's content is wider than its column (``scrollWidth <=
clientWidth`` for every block), the cells of a row do not overlap, the page never scrolls
sideways; JSON outputs are field tables; text arrives as written (UTF-8). Each page's
screenshot is kept in the test's tmp dir. A control re-runs the check with the old CSS rules
(no wrapping anywhere, automatic table layout) and must find overflow: the check can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from jobs.review.page import (
    LabelSet,
    PromptColumn,
    PromptOutput,
    ResultKey,
    ReviewRow,
    write_review_page,
)
from jobs.review.verdicts import GROUNDING_METRIC_NOTES, RatesColumn, render_ab_section
from tests.chromium import Browser
from udfs.evaluation.ab import paired_verdict, rate_ci
from udfs.outputs.guardrails import GUARDRAIL_DESCRIPTIONS

pytestmark = pytest.mark.e2e

WIDTH = 1280
LONG = "x" * 200
PATH = "/mnt/images/" + "deep_folder_" * 17 + "img.jpg"  # 200+ characters, no space
NON_ASCII = "Tasse à café en grès, Ελληνικά, кириллица, ½ × 3 — “quoted” ✓"
JSON_OUTPUT = json.dumps({
    "subject": "a mug", "colors": ["white", LONG], "count": "uncertain",
    "visible_features": ["handle", "rim", NON_ASCII], "not_visible": [],
    "confidence": "low",
}, ensure_ascii=False)
ALL, NONE = ([1, 1, 1, 1], [1, 1, 1, 1]), ([0, 0, 0, 0], [1, 1, 1, 1])
# Every laid-out block whose content is wider than its box, and every row whose cells
# overlap; with the page's own width against the window's.
OVERFLOW_JS = """(() => {
  const bad = [];
  const blocks = 'td, th, dd, dt, li, pre, p, h1, h2, div, table, section, ul';
  for (const el of document.querySelectorAll(blocks)) {
    if (getComputedStyle(el).display === 'inline') continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      bad.push(`${el.tagName.toLowerCase()}.${el.className}: ${el.scrollWidth} > ${el.clientWidth}`);
    }
  }
  for (const row of document.querySelectorAll('tr')) {
    const cells = [...row.children].map(c => c.getBoundingClientRect());
    for (let i = 1; i < cells.length; i++) {
      if (cells[i].left < cells[i - 1].right - 1) bad.push(`overlapping cells in a row`);
    }
  }
  const page = document.documentElement.scrollWidth;
  if (page > window.innerWidth) bad.push(`page ${page} px wide in a ${window.innerWidth} px window`);
  return bad;
})()"""
OLD_RULES_JS = """(() => {
  const style = document.createElement('style');
  style.textContent = 'body { overflow-wrap: normal !important; } ' +
    'table.images, table.fields { table-layout: auto !important; }';
  document.head.appendChild(style);
  return true;
})()"""


def _rows() -> list[ReviewRow]:
    def key(i: int, version: str) -> ResultKey:
        return ResultKey(f"img{i}-{LONG}", "describe", version, "Qwen/Qwen2-VL-2B", "f" * 16)

    rows = []
    for i in range(3):
        outputs = {
            "describe/v1": PromptOutput(f"Object type: {LONG}", flags=("stated_count",),
                                        key=key(i, "v1")),
            "describe/v2": PromptOutput(f"{NON_ASCII} {LONG}", finish_reason="stop",
                                        key=key(i, "v2")),
            "describe/v3": PromptOutput(JSON_OUTPUT, key=key(i, "v3")),
        }
        rows.append(ReviewRow(image_id=f"img{i}-{LONG}", path=PATH, outputs=outputs,
                              low_visibility=i == 0, orig_width=4000, orig_height=3000))
    rows.append(ReviewRow(image_id="broken", path=PATH, image_status="decode_error",
                          outputs={"describe/v2": PromptOutput(
                              None, status="decode_error", status_message=LONG)}))
    return rows


def _columns() -> list[PromptColumn]:
    return [PromptColumn(f"describe/{v}", prompt_hash="ab" * 32, description=LONG,
                         fingerprints={"f" * 64: 3, LONG: 1}) for v in ("v1", "v2", "v3")]


def _facts() -> dict:
    return {"selection": f"describe/v2 on {LONG}", "results table": PATH,
            "rows by status": {"ok": 3, "decode_error": 1}, "describe runs": [LONG, NON_ASCII]}


def _ab_section(title: str, notes: dict, percent: bool) -> str:
    long_label = f"v2-{LONG}"
    columns = [RatesColumn("v1", f"describe/v1 {LONG}", {"hallucination_per_mention": rate_ci(ALL),
                                                         LONG: rate_ci(NONE)}),
               RatesColumn(long_label, NON_ASCII, {"hallucination_per_mention": rate_ci(NONE)})]
    verdicts = [paired_verdict("hallucination_per_mention", ("v1", ALL), (long_label, NONE)),
                paired_verdict(LONG, ("v1", ALL), (long_label, ALL))]
    return render_ab_section(title, columns, verdicts, notes=notes, percent=percent,
                             intro=f"{NON_ASCII} {LONG}")


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layout-pages")
    made = {
        "review": ("Candid review", [], None),
        "labelling": ("Candid labelling", [], LabelSet(LONG, PATH, f"3 of 3 ok rows {LONG}")),
        "compare": ("Candid prompt comparison",
                    [_ab_section("Flag rates", GUARDRAIL_DESCRIPTIONS, True)], None),
        "eval": ("Candid grounding eval",
                 [_ab_section("Grounding against known truth", GROUNDING_METRIC_NOTES, False)],
                 None),
    }
    paths = {}
    for name, (title, sections, label_set) in made.items():
        paths[name] = Path(write_review_page(root / f"{name}.html", f"{title}: {LONG}",
                                             _columns(), _rows(), _facts(), sections, label_set))
    return paths


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    root = tmp_path_factory.mktemp("chromium")
    (root / "downloads").mkdir()
    chromium = Browser(root / "profile", root / "downloads", width=WIDTH, height=900)
    yield chromium
    chromium.close()


@pytest.mark.parametrize("name", ["review", "labelling", "compare", "eval"])
def test_nothing_overflows_its_column_at_1280_px(browser, pages, name, tmp_path):
    browser.open(pages[name])
    shot = browser.screenshot(tmp_path / f"{name}.png")
    assert browser.evaluate(OVERFLOW_JS) == []
    with Image.open(shot) as image:
        assert image.width == WIDTH  # the screenshot is the page: no sideways overflow
        assert image.height > 900
    assert browser.console == [], browser.console


def test_the_check_finds_overflow_under_the_old_rules(browser, pages):
    browser.open(pages["review"])
    browser.evaluate(OLD_RULES_JS)
    found = browser.evaluate(OVERFLOW_JS)
    assert any(f.startswith("page ") for f in found), found
    assert len(found) > 5


def test_json_outputs_are_field_tables(browser, pages):
    browser.open(pages["review"])
    fields = browser.evaluate(
        "[...document.querySelectorAll('td[data-prompt=\"describe/v3\"] table.fields')]"
        ".map(t => [...t.querySelectorAll(':scope > tbody > tr, :scope > tr')]"
        ".map(r => r.querySelector('th').textContent))")
    assert fields == [["subject", "colors", "count", "visible features", "not visible",
                       "confidence"]] * 3
    assert browser.evaluate("document.body.innerText.includes('\"subject\"')") is False


def test_non_ascii_text_arrives_as_written(browser, pages):
    browser.open(pages["compare"])
    assert browser.evaluate("document.characterSet") == "UTF-8"
    outputs = browser.evaluate(
        "[...document.querySelectorAll('td[data-prompt=\"describe/v2\"] pre.desc')]"
        ".map(p => p.textContent)")
    assert outputs == [f"{NON_ASCII} {LONG}"] * 3
    listed = browser.evaluate(
        "[...document.querySelectorAll('td[data-prompt=\"describe/v3\"] li')]"
        ".map(li => li.textContent)")
    assert listed.count(NON_ASCII) == 3
    facts = browser.evaluate("[...document.querySelectorAll('ul.fact-list li')]"
                             ".map(li => li.textContent)")
    assert facts == ["ok: 3", "decode_error: 1", LONG, NON_ASCII]


def test_headers_are_words(browser, pages):
    browser.open(pages["eval"])
    metric = browser.evaluate(
        "document.querySelector('tr.ab-rate[data-metric=\"hallucination_per_mention\"] td')"
        ".textContent")
    assert metric == "hallucination per mention"
    flag = browser.evaluate("document.querySelector('th[data-flag=\"stated_count\"]').textContent")
    assert flag == "stated count"
