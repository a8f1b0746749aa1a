"""The review page: thumbnails, structure, counts and escaping of a page built from images
made in tmp_path. The rendered DOM in a real browser is checked in tests/e2e."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from jobs.review.page import (
    CSP,
    PromptColumn,
    PromptOutput,
    ReviewRow,
    render_review_page,
    review_rows_from_records,
    thumbnail_data_uri,
    write_review_page,
)
from tests.html_dom import Dom
from udfs.outputs.guardrails import GUARDRAIL_DESCRIPTIONS
from udfs.outputs.tally import Tally

V1, V2 = "describe/v1", "describe/v2"
EVIL = '<script>alert("x")</script> & "quotes"'



def parse(page: str) -> Dom:
    dom = Dom()
    dom.feed(page)
    return dom


def _image(path: Path, size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG") -> Path:
    """A gradient image; in RGBA its right half is fully transparent."""
    across = Image.linear_gradient("L").rotate(90).resize(size)
    down = Image.linear_gradient("L").resize(size)
    bands = [across, down, Image.new("L", size, 128)]
    if mode == "RGBA":
        alpha = Image.new("L", size, 0)
        alpha.paste(255, (0, 0, size[0] // 2, size[1]))
        bands.append(alpha)
    Image.merge(mode, bands).save(path, format=fmt)
    return path


def _decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp_path = tmp_path_factory.mktemp("images")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    return {
        "wide": _image(tmp_path / "wide.jpg", (640, 320), fmt="JPEG"),
        "alpha": _image(tmp_path / "alpha.png", (100, 200), mode="RGBA"),
        "tiny": _image(tmp_path / "tiny.png", (12, 9)),
        "broken": broken,
        "missing": tmp_path / "missing.png",
    }


# --- thumbnails -------------------------------------------------------------------------------


def test_thumbnail_is_a_downscaled_inline_jpeg(images):
    wide = _decode(thumbnail_data_uri(str(images["wide"])))
    assert wide.size == (160, 80)
    tall = _decode(thumbnail_data_uri(str(images["alpha"]), max_side=64))
    assert tall.size == (32, 64)
    assert _decode(thumbnail_data_uri(str(images["tiny"]))).size == (12, 9)  # never upscaled


def test_thumbnail_puts_transparency_on_white(images):
    thumb = _decode(thumbnail_data_uri(images["alpha"].read_bytes(), max_side=100)).convert("RGB")
    right_half = thumb.getpixel((thumb.width - 2, thumb.height // 2))
    assert min(right_half) > 235  # transparent there: white, not black


def test_thumbnail_follows_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (320, 160), (200, 40, 40)).save(path, format="JPEG", exif=exif)
    assert _decode(thumbnail_data_uri(str(path))).size == (80, 160)


def test_thumbnail_uses_the_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (40, 40), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    red, _, blue = _decode(thumbnail_data_uri(str(path))).convert("RGB").getpixel((20, 20))
    assert red > 200 and blue < 60


def test_thumbnail_refuses_decompression_bombs(tmp_path, monkeypatch):
    import jobs.review.thumbnails as thumbnails

    monkeypatch.setattr(thumbnails, "THUMBNAIL_MAX_PIXELS", 100)
    path = tmp_path / "big.png"
    Image.new("RGB", (20, 20)).save(path)
    assert thumbnail_data_uri(str(path)) is None


def test_thumbnail_accepts_file_uris_and_bytes(images):
    assert thumbnail_data_uri(images["wide"].as_uri()) is not None
    assert thumbnail_data_uri(images["wide"].read_bytes()) is not None


@pytest.mark.parametrize("name", ["broken", "missing"])
def test_thumbnail_never_raises(images, name):
    assert thumbnail_data_uri(str(images[name])) is None


def test_thumbnail_of_garbage_bytes_and_directories_is_none(tmp_path):
    assert thumbnail_data_uri(b"") is None
    assert thumbnail_data_uri(b"\x89PNG\r\n\x1a\n truncated") is None
    assert thumbnail_data_uri(str(tmp_path)) is None


# --- the page ---------------------------------------------------------------------------------


def _rows(images: dict[str, Path]) -> list[ReviewRow]:
    return [
        ReviewRow(
            image_id="img-wide",
            path=str(images["wide"]),
            thumbnail=thumbnail_data_uri(str(images["wide"])),
            outputs={
                V1: PromptOutput("Furniture, 4, wheels", flags=("stated_count",)),
                V2: PromptOutput(
                    "This image shows a chair next to a table.",
                    flags=("generic_opener", "scope_drift"),
                    finish_reason="stop",
                ),
            },
            orig_width=640, orig_height=320, visual_tokens=204,
        ),
        ReviewRow(
            image_id="img-tiny",
            path=str(images["tiny"]),
            thumbnail=images["tiny"].read_bytes(),  # raw bytes: downscaled by the renderer
            low_visibility=True,
            outputs={
                V1: PromptOutput(EVIL, finish_reason="length", flags=("truncated",)),
                V2: PromptOutput("A small dark shape; it cannot be seen clearly."),
            },
        ),
        ReviewRow(
            image_id="img-broken",
            path=str(images["broken"]),
            thumbnail=None,
            image_status="decode_error",
            outputs={
                V1: PromptOutput(None, status="decode_error", status_message="cannot identify"),
                V2: PromptOutput(None, status="decode_error", status_message="cannot identify"),
            },
        ),
        ReviewRow(
            image_id="img-v1-only",
            path=str(images["alpha"]),
            thumbnail="javascript:alert(1)",  # not a data:image URI: never put in src
            outputs={V1: PromptOutput("Object type: other")},
        ),
    ]


@pytest.fixture()
def page(images) -> str:
    prompts = [
        PromptColumn(V1, prompt_hash="aaaa1111", description="forced choice baseline"),
        PromptColumn(V2, prompt_hash="bbbb2222", description="grounded"),
    ]
    summary = {"run_id": "run-42", "model": "Qwen/Qwen2-VL-2B-Instruct", "note": EVIL}
    return render_review_page(f"Review {EVIL}", prompts, _rows(images), summary)


def test_page_is_one_row_per_image_with_prompt_columns_in_order(page):
    dom = parse(page)
    rows = dom.having("tr", "image-row")
    ids = [r["data-image-id"] for r in rows]
    assert ids == ["img-wide", "img-tiny", "img-broken", "img-v1-only"]
    headers = [a["data-prompt"] for a in dom.having("th") if "data-prompt" in a]
    assert headers == [V1, V2]
    cells = [a["data-prompt"] for a in dom.having("td", "output")]
    assert cells == [V1, V2] * 4
    assert "no result" in "".join(dom.text)  # img-v1-only has no v2 output


def test_thumbnails_inline_or_placeholder_naming_the_status(page):
    dom = parse(page)
    thumbs = dom.having("img", "thumb")
    assert len(thumbs) == 2
    assert all(t["src"].startswith("data:image/jpeg;base64,") for t in thumbs)
    placeholders = dom.having("div", "thumb-missing")
    assert [p["data-status"] for p in placeholders] == ["decode_error", "no thumbnail"]
    assert "javascript:" not in page


def test_summary_table_counts_rows_ok_errors_and_flag_rates(page):
    dom = parse(page)
    summary_rows = dom.having("tr", "prompt-summary")
    assert [r["data-prompt"] for r in summary_rows] == [V1, V2]
    table = page[page.index('<table class="summary">') : page.index("</table>")]
    v1 = table[table.index(f'data-prompt="{V1}"') :].split("</tr>")[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", v1)
    # prompt, hash, fingerprints, rows, ok, errors, then flags in GUARDRAILS order on the page
    assert cells[1:6] == ["<code>aaaa1111</code>", "", "4", "3", "1"]
    flag_heads = re.findall(r'<th data-flag="([a-z_]+)" title="[^"]*">([a-z ]+)</th>', table)
    assert flag_heads == [("truncated", "truncated"), ("generic_opener", "generic opener"),
                          ("stated_count", "stated count"), ("scope_drift", "scope drift")]
    assert cells[6:] == ["33.3%", "0.0%", "33.3%", "0.0%"]
    assert "<h2>Prompts (rows shown)</h2>" in page


def test_whole_run_figures_win_over_the_rows_shown(images):
    stats = Tally({"ok": 990, "missing_file": 10}, {"refusal": 2})
    column = PromptColumn(V2, stats=stats, fingerprints={"0123456789abcdef": 1000})
    page = render_review_page("t", [column], _rows(images), {})
    table = page[page.index('<table class="summary">') :].split("</table>")[0]
    assert ">1000<" in table and ">990<" in table and ">10<" in table and ">0.2%<" in table
    assert '<code class="fingerprint">0123456789abcdef</code> (1000)' in table
    assert "<h2>Prompts (whole run)</h2>" in page


def test_flags_are_badges_with_descriptions_as_tooltips(page):
    dom = parse(page)
    badges = dom.having("span", "flag")
    in_rows = [b["data-flag"] for b in badges]
    assert in_rows.count("stated_count") == 2  # one in the legend, one in a row
    for badge in badges:
        assert badge["title"] == GUARDRAIL_DESCRIPTIONS[badge["data-flag"]]


def test_low_visibility_and_errors_are_marked(page):
    dom = parse(page)
    low = [r["data-image-id"] for r in dom.having("tr", "low-visibility")]
    assert low == ["img-tiny"]
    assert len(dom.having("span", "lowvis")) == 1
    errors = dom.having("span", "status-error")
    assert [e["data-status"] for e in errors] == ["decode_error", "decode_error"]
    assert errors[0]["title"] == "cannot identify"


def test_image_metrics_are_shown(page):
    text = "".join(parse(page).text)
    assert "640\u00d7320 px" in text
    assert "204 visual tokens" in text


def test_model_text_is_escaped_everywhere(page):
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    text = "".join(parse(page).text)
    assert text.count('<script>alert("x")</script>') == 4  # title, heading, summary, output


def test_page_is_offline(page):
    assert not re.search(r"https?://", page)
    assert not re.search(r"@import|url\(\s*['\"]?(?!data:)", page)
    assert f'content="{CSP.replace(chr(39), "&#x27;")}"' in page
    assert "<script" not in page and "<link" not in page


def test_json_outputs_are_field_tables_in_words():
    text = '{"subject":"a mug","visible_features":["handle","rim"],"count":"uncertain","not_visible":[]}'
    row = ReviewRow(image_id="j", path="j.png", outputs={"describe/v3": PromptOutput(text)})
    page = render_review_page("t", [PromptColumn("describe/v3")], [row], {})
    dom = parse(page)
    assert [f["data-field"] for f in dom.having("tr") if "data-field" in f] == [
        "subject", "visible_features", "count", "not_visible"]
    assert "<th>visible features</th><td><ul class='values'><li>handle</li><li>rim</li></ul>" in page
    assert "<th>not visible</th><td><span class=\"none\">none</span>" in page
    assert "&quot;subject&quot;" not in page and '<pre class="desc">' not in page


def test_the_validated_structured_output_wins_over_the_raw_text():
    out = PromptOutput('{"subject": "raw"} trailing', fields={"subject": "validated"})
    page = render_review_page("t", [PromptColumn("v3")], [ReviewRow("j", "j", {"v3": out})], {})
    assert "<td>validated</td>" in page and "raw" not in page


def test_broken_json_and_prose_are_shown_as_written():
    for text in ('{"subject": "a mug", "count": ', "A mug {with braces}."):
        row = ReviewRow("j", "j", {"v3": PromptOutput(text)})
        page = render_review_page("t", [PromptColumn("v3")], [row], {})
        assert f'<pre class="desc">{text.replace(chr(34), "&quot;")}</pre>' in page


def test_nested_json_is_a_nested_table_and_deep_json_is_text():
    fields = {"a": {"b": {"c": {"d": {"e": 1}}}}, "ok": True}
    page = render_review_page("t", [PromptColumn("v3")],
                              [ReviewRow("j", "j", {"v3": PromptOutput("x", fields=fields)})], {})
    assert page.count('<table class="fields">') == 4  # depth 4 at most, then JSON text
    assert "{&quot;e&quot;: 1}" in page and "<th>ok</th><td>yes</td>" in page


def test_facts_are_words_not_json():
    page = render_review_page("t", [], [], {"rows by status": {"ok": 24, "missing_file": 2},
                                            "runs": ["a", "b"]})
    assert "<li>ok: 24</li><li>missing_file: 2</li>" in page and "<li>a</li><li>b</li>" in page
    assert "{" not in page[page.index("<body>"):]


def test_non_ascii_text_is_kept_as_utf8(tmp_path):
    text = "Café crème, 日本語の説明, مرحبا, emoji 🍵"
    row = ReviewRow("ü-1", "/p/ünï.jpg", {"v2": PromptOutput(text)})
    target = tmp_path / "u.html"
    write_review_page(target, "Überblick", [PromptColumn("v2")], [row], {"Modell": "ÆØÅ"})
    raw = target.read_bytes()
    assert raw.decode("utf-8").count(text) == 1
    assert text.encode("utf-8") in raw and b'<meta charset="utf-8">' in raw[:200]


def test_empty_page_renders(images):
    page = render_review_page("nothing", [PromptColumn(V2)], [], {})
    assert "Images (0)" in page
    assert parse(page).having("tr", "prompt-summary")


def test_write_review_page(tmp_path, images):
    target = tmp_path / "reviews" / "page.html"
    written = write_review_page(target, "t", [PromptColumn(V2)], _rows(images), {"run": "r"})
    assert written == str(target)
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# --- from result rows -------------------------------------------------------------------------


def test_review_rows_from_records_groups_by_image(images):
    base = {"path": str(images["wide"]), "orig_width": 640, "orig_height": 320}
    records = [
        {**base, "image_id": "a", "prompt_name": "describe", "prompt_version": "v1",
         "status": "ok", "description": "x", "guardrail_flags": ["truncated"],
         "finish_reason": "length", "low_visibility": False, "visual_tokens": 204},
        {"image_id": "b", "path": str(images["missing"]), "prompt_name": "describe",
         "prompt_version": "v2", "status": "missing_file", "description": float("nan"),
         "guardrail_flags": None, "orig_width": float("nan"), "low_visibility": None},
        {**base, "image_id": "a", "prompt_name": "describe", "prompt_version": "v2",
         "status": "ok", "description": "y", "guardrail_flags": [], "finish_reason": "stop"},
    ]
    rows = review_rows_from_records(records)
    assert [r.image_id for r in rows] == ["a", "b"]
    a, b = rows
    assert set(a.outputs) == {V1, V2}
    assert a.outputs[V1] == PromptOutput("x", "ok", ("truncated",), "length", None)
    assert (a.orig_width, a.visual_tokens, a.low_visibility) == (640, 204, False)
    assert a.thumbnail is not None and a.thumbnail.startswith("data:image/jpeg")
    assert b.image_status == "missing_file" and b.thumbnail is None
    assert b.outputs[V2].description is None and b.outputs[V2].flags == ()
    assert b.orig_width is None
    page = render_review_page("t", [PromptColumn(V1), PromptColumn(V2)], rows, {})
    assert 'data-status="missing_file"' in page


def test_review_rows_without_thumbnails(images):
    record = {"image_id": "a", "path": str(images["wide"]), "prompt_name": "d",
              "prompt_version": "v1", "status": "ok"}
    assert review_rows_from_records([record], max_side=None)[0].thumbnail is None
