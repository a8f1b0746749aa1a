"""Synthetic scenes: deterministic bytes, thumbnail sizes, and truth that matches the pixels."""

from __future__ import annotations

import doctest
import hashlib
import io
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udfs.evaluation.scene_objects import Shape
from udfs.evaluation.scenes import ScenePlan, paint, plan_scene, render_scene

SEEDS_AND_INDICES = [(seed, i) for seed in (0, 7) for i in range(30)]
# The test's own idea of each colour name (not the module's palette): a pixel must be nearer to
# its truth name than to any other name.
REFERENCE_RGB = {
    "red": (255, 0, 0), "orange": (255, 165, 0), "yellow": (255, 215, 0),
    "green": (0, 128, 0), "blue": (0, 0, 255), "purple": (128, 0, 128),
    "pink": (255, 150, 200), "brown": (139, 69, 19), "black": (0, 0, 0),
    "grey": (128, 128, 128), "white": (255, 255, 255),
}


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int32)


def _distinct(px: np.ndarray) -> list[tuple[int, int, int]]:
    """The distinct pixel values of an image (or region)."""
    packed = np.unique((px[..., 0] << 16) | (px[..., 1] << 8) | px[..., 2])
    return [(int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255) for v in packed]


def _name_of(rgb) -> str:
    """The reference colour name nearest to ``rgb``."""
    def dist(name: str) -> int:
        return sum((a - b) ** 2 for a, b in zip(rgb, REFERENCE_RGB[name], strict=True))

    return min(REFERENCE_RGB, key=dist)


def _components(mask: np.ndarray) -> int:
    """Connected components (4-neighbourhood) of a boolean mask."""
    seen = np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    n = 0
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        n += 1
        seen[y, x] = True
        todo = deque([(y, x)])
        while todo:
            cy, cx = todo.popleft()
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    todo.append((ny, nx))
    return n


def _subject_only(plan: ScenePlan) -> ScenePlan:
    return ScenePlan(shapes=tuple(s for s in plan.shapes if s.role == "subject"), truth=plan.truth)


def _overlaps(a: Shape, b: Shape) -> bool:
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    return ax0 <= bx1 and bx0 <= ax1 and ay0 <= by1 and by0 <= ay1


# --- determinism and degradation -------------------------------------------------------------


def test_same_seed_and_index_give_identical_bytes_and_truth():
    for seed, i in [(0, 0), (0, 5), (7, 13), (123456, 2)]:
        first, second = render_scene(seed, i), render_scene(seed, i)
        assert first.image == second.image
        assert first.truth == second.truth
        assert first.image[:2] == b"\xff\xd8"  # a JPEG


def test_different_indices_and_seeds_give_different_scenes():
    images = {render_scene(seed, i).image for seed, i in SEEDS_AND_INDICES}
    assert len(images) == len(SEEDS_AND_INDICES)


def test_bytes_do_not_depend_on_the_process():
    # Another interpreter with another hash seed renders the same bytes (no set-order or
    # per-process randomness leaks into a scene).
    code = ("import hashlib; from udfs.evaluation.scenes import render_scene; "
            "data = b''.join(render_scene(7, i).image for i in range(6)); "
            "print(hashlib.sha256(data).hexdigest())")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    here = hashlib.sha256(b"".join(render_scene(7, i).image for i in range(6))).hexdigest()
    assert out.stdout.strip() == here


def test_scene_id_names_seed_and_index():
    assert render_scene(7, 42).scene_id == "scene-7-000042"


@pytest.mark.parametrize(("seed", "index"), SEEDS_AND_INDICES[::3])
def test_thumbnail_is_a_small_jpeg_as_the_truth_says(seed, index):
    scene = render_scene(seed, index)
    params = scene.truth["degradation"]
    with Image.open(io.BytesIO(scene.image)) as im:
        assert im.format == "JPEG"
        assert im.size == (scene.width, scene.height)
    assert max(scene.width, scene.height) == params["long_side"]
    assert 64 <= params["long_side"] <= 256
    assert 30 <= params["jpeg_quality"] <= 80
    assert 0.2 <= params["blur_radius"] <= 1.0


def test_degradation_parameters_vary_across_scenes():
    params = [render_scene(0, i).truth["degradation"] for i in range(30)]
    assert len({p["long_side"] for p in params}) > 10
    assert len({p["jpeg_quality"] for p in params}) > 10
    sides = [p["long_side"] for p in params]
    assert min(sides) < 128 < max(sides)


def test_lower_jpeg_quality_loses_detail():
    # Same picture, two qualities: the lower one is smaller (the parameter is really applied).
    from udfs.evaluation.scenes import degrade

    img = paint(plan_scene(0, 1))
    params = {"long_side": 200, "blur_radius": 0.3}
    low = degrade(img, {**params, "jpeg_quality": 30})
    high = degrade(img, {**params, "jpeg_quality": 80})
    assert len(low) < len(high)


# --- truth matches what is drawn --------------------------------------------------------------


@pytest.mark.parametrize(("seed", "index"), SEEDS_AND_INDICES)
def test_rendered_count_equals_truth_count(seed, index):
    plan = plan_scene(seed, index)
    counted = [s for s in plan.shapes if s.counted]
    assert counted and all(s.role == "subject" for s in counted)
    parts = {s.part for s in counted}
    if plan.truth["count_kind"] == "parts":
        assert parts == {plan.truth["count_of"]}
    else:  # one shape per instance, e.g. each mug's body or each lamp's shade
        assert plan.truth["count_of"] == plan.truth["subject"] and len(parts) == 1
    colors = {s.color for s in counted}
    assert len(colors) == 1
    # Count blobs of the counted colour in the painted subject: each part or instance is one.
    px = _pixels(paint(_subject_only(plan)))
    (name,) = colors
    target = _rgb_of_name(px, name)
    assert _components(np.all(px == target, axis=-1)) == plan.truth["count"]


def _rgb_of_name(px: np.ndarray, name: str) -> np.ndarray:
    """The one distinct pixel value of the image whose nearest reference name is ``name``."""
    values = _distinct(px)
    matches = [v for v in values if _name_of(v) == name]
    assert len(matches) == 1, (name, matches)
    return np.array(matches[0])


@pytest.mark.parametrize(("seed", "index"), SEEDS_AND_INDICES[::2])
def test_truth_colors_are_the_subject_pixels(seed, index):
    plan = plan_scene(seed, index)
    px = _pixels(paint(_subject_only(plan)))
    drawn = {_name_of(v) for v in _distinct(px)} - {"white"}
    assert drawn == set(plan.truth["colors"])
    everything = {_name_of(v) for v in _distinct(_pixels(paint(plan)))}
    assert everything == set(plan.truth["scene_colors"])


@pytest.mark.parametrize(("seed", "index"), SEEDS_AND_INDICES)
def test_present_and_absent_features_match_the_shapes(seed, index):
    plan = plan_scene(seed, index)
    t = plan.truth
    subject_parts = {s.part for s in plan.shapes if s.role == "subject" and s.part}
    distractor_parts = {s.part for s in plan.shapes if s.role == "distractor" and s.part}
    assert set(t["present"]) == subject_parts - {t["subject"]}
    assert not set(t["absent"]) & (subject_parts | distractor_parts)
    assert t["subject"] not in t["absent"] and t["subject"] not in t["present"]
    assert t["absent"], "every scene has things absent by construction"
    # Every present feature is visible: some pixel of its shape keeps the shape's colour.
    px = _pixels(paint(_subject_only(plan)))
    for feature in t["present"]:
        assert any(_visible(px, s) for s in plan.shapes if s.part == feature), feature


def _visible(px: np.ndarray, shape: Shape) -> bool:
    x0, y0, x1, y1 = (round(v) for v in shape.bbox)
    region = px[max(0, y0):y1 + 1, max(0, x0):x1 + 1]
    return any(_name_of(v) == shape.color for v in _distinct(region))


@pytest.mark.parametrize(("seed", "index"), SEEDS_AND_INDICES)
def test_distractor_is_cut_by_its_frame_edge_and_apart_from_the_subject(seed, index):
    plan = plan_scene(seed, index)
    t = plan.truth
    distractor = [s for s in plan.shapes if s.role == "distractor"]
    subject = [s for s in plan.shapes if s.role == "subject"]
    px = _pixels(paint(plan))
    white = np.array([_rgb_of_name(px, "white")])
    left_busy = bool(np.any(px[:, 0] != white))
    right_busy = bool(np.any(px[:, -1] != white))
    if t["distractor"] is None:
        assert not distractor and t["distractor_edge"] is None and t["distractor_items"] == []
        assert not left_busy and not right_busy
        return
    assert t["distractor"] != t["subject"]
    assert t["distractor"] in t["distractor_items"]
    assert left_busy is (t["distractor_edge"] == "left")
    assert right_busy is (t["distractor_edge"] == "right")
    width = px.shape[1]
    if t["distractor_edge"] == "left":
        assert min(s.bbox[0] for s in distractor) < 0  # drawn past the frame: cut
    else:
        assert max(s.bbox[2] for s in distractor) > width - 1
    assert not any(_overlaps(d, s) for d in distractor for s in subject)


def test_distractor_edge_survives_degradation():
    for seed, i in SEEDS_AND_INDICES:
        scene = render_scene(seed, i)
        if scene.truth["distractor"] is None:
            continue
        px = _pixels(Image.open(io.BytesIO(scene.image)))
        col = px[:, 0] if scene.truth["distractor_edge"] == "left" else px[:, -1]
        # Some pixel of the edge column is clearly not the white background.
        assert np.max(np.abs(col - 250).sum(axis=1)) > 100, scene.scene_id


def test_scenes_cover_the_vocabulary_and_both_kinds_of_count():
    truths = [plan_scene(0, i).truth for i in range(120)]
    assert {t["subject"] for t in truths} == {
        "table", "chair", "flower", "car", "house", "mug", "lamp"}
    assert {t["count_kind"] for t in truths} == {"parts", "instances"}
    assert {t["distractor_edge"] for t in truths} == {None, "left", "right"}
    assert len({t["count"] for t in truths}) >= 5
    # Optional features are sometimes drawn and sometimes not.
    houses = [t for t in truths if t["subject"] == "house"]
    assert any("chimney" in t["present"] for t in houses)
    assert any("chimney" in t["absent"] for t in houses)


def test_known_scene_truth():
    # One scene pinned, so a change to the generator is a visible, reviewed change.
    t = plan_scene(1, 1).truth
    assert (t["subject"], t["count"], t["count_of"]) == ("table", 6, "leg")
    assert t["count_kind"] == "parts"
    assert t["present"] == ["drawer", "leg"]
    assert (t["distractor"], t["distractor_edge"]) == ("house", "left")
    assert t["distractor_items"] == ["door", "house", "roof", "window"]
    assert t["colors"] == ["orange", "pink", "red"]


def test_docstring_examples_run():
    import udfs.evaluation.scenes

    result = doctest.testmod(udfs.evaluation.scenes)
    assert result.attempted > 0 and result.failed == 0
