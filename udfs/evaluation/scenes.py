"""Synthetic scenes with known truth, for measuring whether descriptions are true.

One subject from ``SUBJECT_TYPES`` is drawn with flat colours (no anti-aliasing) in the middle of
the canvas: a known number of its countable parts (table legs, petals, wheels, windows) or of
instances (mugs, lamps), known colours from ``PALETTE``, and optional features that are drawn or
not by a coin toss. Some scenes add a distractor: another object type, half outside the canvas
at the left or right edge, the "adjacent object cut by the frame" that a scoped prompt must
ignore. The picture is then degraded like a web thumbnail (downscaled so the longer side is
64-256 px, mildly blurred, JPEG quality 30-80).

Everything is a pure function of ``(seed, index)``: the same pair gives byte-identical JPEG
bytes (same Pillow build). The truth is derived from the very shapes that are painted
(``plan_scene``), so a test can check it against the pixels (``paint``).

Truth keys (all JSON-safe): ``subject``, ``colors`` (the subject's colour names), ``count``,
``count_of`` (the vocabulary item counted: a part such as ``"leg"``, or the subject type for
instance scenes), ``count_kind`` (``"parts"`` or ``"instances"``), ``present`` (features drawn
on the subject), ``absent`` (object types and features drawn nowhere), ``distractor`` (type or
None), ``distractor_edge`` (``"left"``, ``"right"`` or None), ``distractor_items`` (its type and
features), ``scene_colors`` (every colour drawn, background included), ``degradation``.

The objects themselves (palette, shapes, how each type is drawn) are in
``udfs.evaluation.scene_objects``; this module composes them into scenes and degrades them.
"""

from __future__ import annotations

import hashlib
import io
import random
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

from udfs.evaluation.scene_objects import (
    ALL_FEATURES,
    BACKGROUND,
    PALETTE,
    PART_COLORS,
    SUBJECT_TYPES,
    Box,
    Shape,
)

# Full-size canvas before degradation: large enough that a six-legged table has gaps between legs.
CANVAS = (448, 320)
# The subject's box: the middle half of the canvas, so a distractor fits at either side.
SUBJECT_BOX = (112, 24, 336, 300)
# A distractor's box: 192 px wide, more than half of it outside the canvas.
DISTRACTOR_BOXES: dict[str, tuple[int, int, int, int]] = {
    "left": (-104, 60, 88, 300), "right": (360, 60, 552, 300),
}
# Half the scenes carry a distractor: enough of both kinds for scope-violation rates.
DISTRACTOR_PROBABILITY = 0.5
# Each optional feature is drawn with this probability, so present and absent both occur.
FEATURE_PROBABILITY = 0.5
# Thumbnail degradation ranges (inclusive), as seen on web thumbnails.
THUMB_LONG_SIDE = (64, 256)
JPEG_QUALITY = (30, 80)
BLUR_RADIUS = (0.2, 1.0)


@dataclass(frozen=True)
class ScenePlan:
    """Everything to paint a scene, and its truth (``degradation`` not yet included)."""

    shapes: tuple[Shape, ...]
    truth: dict[str, Any]


@dataclass(frozen=True)
class Scene:
    """A rendered, degraded scene: JPEG bytes, their size, and the truth."""

    seed: int
    index: int
    image: bytes
    width: int
    height: int
    truth: dict[str, Any]

    @property
    def scene_id(self) -> str:
        """A stable id such as ``scene-7-000042``."""
        return f"scene-{self.seed}-{self.index:06d}"


def _rng(seed: int, index: int) -> random.Random:
    """A generator seeded from a hash of (seed, index): stable across runs and processes."""
    digest = hashlib.sha256(f"candid-scenes:{seed}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _colors(rng: random.Random, fixed: tuple[str, ...]) -> list[str]:
    """Five distinct part colours, none equal to a colour the type always uses."""
    return rng.sample([c for c in PART_COLORS if c not in fixed], 5)


def _make_object(rng: random.Random, kind: str, box: Box,
                 role: str) -> tuple[list[Shape], int]:
    """Draw one object type in ``box``: (shapes, count).

    A distractor is one instance (one mug, not three): it is a single neighbouring object.
    """
    spec = SUBJECT_TYPES[kind]
    single = role != "subject" and spec.count_of == kind
    n = 1 if single else rng.choice(spec.counts)
    feats = {f for f in spec.optional if rng.random() < FEATURE_PROBABILITY}
    shapes = spec.draw(box, n, _colors(rng, spec.fixed_colors), feats)
    if role != "subject":
        shapes = [replace(s, role=role, counted=False) for s in shapes]
    return shapes, n


def _on_canvas(shape: Shape) -> bool:
    """Whether at least 3 pixel columns of ``shape`` fall inside the canvas.

    A distractor part wholly outside the frame (the far wheel of a car cut at the edge) is not
    in the picture, so it is not in the truth either.
    """
    x0, _, x1, _ = shape.bbox
    return x1 >= 2 and x0 <= CANVAS[0] - 3


def plan_scene(seed: int, index: int) -> ScenePlan:
    """The shapes of scene ``(seed, index)`` and its truth (without degradation).

    Example:
        >>> plan_scene(0, 0).truth["subject"] in SUBJECT_TYPES
        True
    """
    rng = _rng(seed, index)
    kind = rng.choice(sorted(SUBJECT_TYPES))
    shapes, n = _make_object(rng, kind, SUBJECT_BOX, "subject")
    edge = None
    other: str | None = None
    d_shapes: list[Shape] = []
    if rng.random() < DISTRACTOR_PROBABILITY:
        edge = rng.choice(sorted(DISTRACTOR_BOXES))
        other = rng.choice(sorted(set(SUBJECT_TYPES) - {kind}))
        d_shapes, _ = _make_object(rng, other, DISTRACTOR_BOXES[edge], "distractor")
        d_shapes = [s for s in d_shapes if _on_canvas(s)]
    present = sorted({s.part for s in shapes if s.part and s.part != kind})
    d_items = sorted({other, *(s.part for s in d_shapes if s.part)} - {"", None}) if other else []
    known = set(SUBJECT_TYPES) | set(ALL_FEATURES)
    truth: dict[str, Any] = {
        "subject": kind,
        "colors": sorted({s.color for s in shapes}),
        "count": n,
        "count_of": SUBJECT_TYPES[kind].count_of,
        "count_kind": "instances" if SUBJECT_TYPES[kind].count_of == kind else "parts",
        "present": present,
        "absent": sorted(known - set(present) - {kind} - set(d_items)),
        "distractor": other,
        "distractor_edge": edge,
        "distractor_items": d_items,
        "scene_colors": sorted({BACKGROUND} | {s.color for s in shapes + d_shapes}),
    }
    return ScenePlan(shapes=tuple(d_shapes + shapes), truth=truth)


def paint(plan: ScenePlan) -> Image.Image:
    """Paint a plan at full size, without anti-aliasing (every pixel is a palette colour)."""
    img = Image.new("RGB", CANVAS, PALETTE[BACKGROUND])
    draw = ImageDraw.Draw(img)
    for s in plan.shapes:
        fill = PALETTE[s.color]
        xy = [round(v) for v in s.xy]
        if s.kind == "rect":
            draw.rectangle(xy, fill=fill)
        elif s.kind == "ellipse":
            draw.ellipse(xy, fill=fill)
        elif s.kind == "ring":
            draw.ellipse(xy, outline=fill, width=s.width)
        elif s.kind == "polygon":
            draw.polygon(xy, fill=fill)
        else:  # a programming error in a draw function, not data
            raise ValueError(f"unknown shape kind {s.kind!r}")
    return img


def degradation(seed: int, index: int) -> dict[str, Any]:
    """The thumbnail parameters of scene ``(seed, index)``: long side, JPEG quality, blur."""
    rng = _rng(seed, -1 - index)  # its own stream: changing a drawing never changes these
    return {
        "long_side": rng.randint(*THUMB_LONG_SIDE),
        "jpeg_quality": rng.randint(*JPEG_QUALITY),
        "blur_radius": round(rng.uniform(*BLUR_RADIUS), 2),
    }


def degrade(img: Image.Image, params: dict[str, Any]) -> bytes:
    """Downscale, blur mildly and JPEG-encode ``img`` as ``params`` (``degradation``) say."""
    scale = params["long_side"] / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    small = img.resize(size, Image.Resampling.BICUBIC)
    small = small.filter(ImageFilter.GaussianBlur(params["blur_radius"]))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=params["jpeg_quality"], subsampling="4:2:0",
               optimize=False)
    return out.getvalue()


def render_scene(seed: int, index: int) -> Scene:
    """Render scene ``(seed, index)``: degraded JPEG bytes and the truth.

    Args:
        seed: the data set's seed.
        index: the scene's position in the data set (0, 1, ...).

    Returns:
        A ``Scene``; the same arguments always give the same bytes and truth.

    Example:
        >>> scene = render_scene(7, 3)
        >>> 64 <= max(scene.width, scene.height) <= 256
        True
    """
    plan = plan_scene(seed, index)
    params = degradation(seed, index)
    data = degrade(paint(plan), params)
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
    return Scene(seed=seed, index=index, image=data, width=width, height=height,
                 truth={**plan.truth, "degradation": params})
