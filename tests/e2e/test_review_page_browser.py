"""The review page in a real browser: headless Chromium loads the written file with every
network request made impossible, and we check what it rendered, not just the HTML we wrote.

- ``--dump-dom``: the DOM after parsing (rows, thumbnails, no script element, escaped text),
  with the browser console on stderr: nothing may violate the page's Content-Security-Policy.
- ``--screenshot``: every thumbnail's colour must be on screen, which only happens when the
  inline image decoded; the page must not be blank.

Chromium is a test requirement, not optional: a missing browser fails with the install hint.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from jobs.review.page import (
    PromptColumn,
    PromptOutput,
    ReviewRow,
    thumbnail_data_uri,
    write_review_page,
)
from tests.chromium import CHROMIUM_FLAGS, chromium_binary
from tests.html_dom import Dom

pytestmark = pytest.mark.e2e

CHROMIUM_TIMEOUT_S = 90
WINDOW = (1280, 1800)  # tall enough for every row of the page below
# Saturated colours that the page's own CSS never uses, one per thumbnail.
THUMB_COLOURS = [(220, 30, 30), (30, 170, 50), (30, 60, 220), (235, 190, 20), (150, 40, 200)]
COLOUR_TOLERANCE = 40
# A 160x120 thumbnail has 19,200 pixels; JPEG edges and scaling lose a few.
MIN_PIXELS_PER_THUMBNAIL = 10_000
EVIL = "<script>document.body.innerHTML = 'pwned'</script>"


def run_chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
               page.as_uri()]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT_S}s: {command}")
    assert done.returncode == 0, f"chromium failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done



@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("review")
    rows = []
    for i, colour in enumerate(THUMB_COLOURS):
        source = root / f"img{i}.png"
        Image.new("RGB", (200, 150), colour).save(source)
        rows.append(ReviewRow(
            image_id=f"img{i}", path=str(source), thumbnail=thumbnail_data_uri(str(source)),
            low_visibility=i == 0,
            outputs={
                "describe/v1": PromptOutput("Object type: other", flags=("stated_count",)),
                "describe/v2": PromptOutput(EVIL if i == 1 else f"A block of colour {i}."),
            },
        ))
    rows.append(ReviewRow(
        image_id="gone", path=str(root / "gone.png"), thumbnail=None, image_status="missing_file",
        outputs={"describe/v2": PromptOutput(None, status="missing_file")},
    ))
    prompts = [PromptColumn("describe/v1", "aaaa"), PromptColumn("describe/v2", "bbbb")]
    target = root / "review.html"
    write_review_page(target, "Browser check", prompts, rows, {"run_id": "e2e"})
    return target


def test_page_needs_no_network(page_file):
    html = page_file.read_text(encoding="utf-8")
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.IGNORECASE)
    assert "Content-Security-Policy" in html
    assert not re.search(r"<(script|link|iframe|object|embed)\b", html, re.IGNORECASE)


def test_rendered_dom(page_file, tmp_path):
    done = run_chromium(page_file, tmp_path / "profile", "--dump-dom")
    dom = Dom()
    dom.feed(done.stdout)
    assert dom.count("tr", "image-row") == len(THUMB_COLOURS) + 1
    assert dom.count("img", "thumb") == len(THUMB_COLOURS)
    assert dom.count("div", "thumb-missing") == 1
    assert dom.count("tr", "low-visibility") == 1
    assert dom.count("span", "flag") == len(THUMB_COLOURS) + 1  # one per row + the legend
    assert not any(tag == "script" for tag, _ in dom.tags)
    assert EVIL in "".join(dom.text)  # shown as text, never run: the body is still the page
    assert "pwned" not in "".join(dom.text).replace(EVIL, "")
    # Anything the page needed from outside, or anything its own CSP blocked, is logged here.
    assert "Content Security Policy" not in done.stderr, done.stderr[-3000:]


def test_rendered_pixels_show_every_thumbnail(page_file, tmp_path):
    shot = tmp_path / "page.png"
    run_chromium(
        page_file, tmp_path / "profile", f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    )
    assert shot.exists(), "chromium wrote no screenshot"
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
    colours = pixels.getcolors(maxcolors=WINDOW[0] * WINDOW[1])
    assert colours is not None and len(colours) > 50, "the screenshot is (nearly) blank"
    for colour in THUMB_COLOURS:
        near = sum(n for n, c in colours if _close(c, colour))
        assert near >= MIN_PIXELS_PER_THUMBNAIL, f"thumbnail {colour} not rendered ({near} px)"


def _close(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return all(abs(x - y) <= COLOUR_TOLERANCE for x, y in zip(a, b, strict=True))
