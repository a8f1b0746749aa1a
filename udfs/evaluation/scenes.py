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
"""

from __future__ import annotations

import hashlib
import io
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

# Flat named colours; names are the colour vocabulary that udfs.evaluation.grounding matches.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30), "orange": (240, 140, 20), "yellow": (240, 210, 30),
    "green": (40, 150, 50), "blue": (30, 70, 200), "purple": (120, 40, 160),
    "pink": (240, 120, 170), "brown": (120, 70, 30), "black": (20, 20, 20),
    "grey": (128, 128, 128), "white": (250, 250, 250),
}
# White is the background, so no part is ever white (it would be invisible).
BACKGROUND = "white"
# Colours a part may take: every palette colour that stands out against the background.
PART_COLORS: tuple[str, ...] = tuple(c for c in PALETTE if c != BACKGROUND)
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

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Shape:
    """One flat-coloured primitive of a scene.

    Attributes:
        kind: ``"rect"``, ``"ellipse"``, ``"polygon"`` or ``"ring"`` (an ellipse outline).
        xy: the bounding box (rect, ellipse, ring) or the vertices (polygon), canvas pixels.
        color: a ``PALETTE`` name.
        part: the vocabulary item this shape shows (``"leg"``, ``"mug"``), or ``""`` for
            structure that is not a vocabulary item (a tabletop, a lamp pole).
        role: ``"subject"`` or ``"distractor"``.
        counted: True for the shapes whose number is the truth count.
        width: outline width of a ring, 0 otherwise.
    """

    kind: str
    xy: tuple[float, ...]
    color: str
    part: str = ""
    role: str = "subject"
    counted: bool = False
    width: int = 0

    @property
    def bbox(self) -> Box:
        """(x0, y0, x1, y1) around the shape."""
        xs, ys = self.xy[0::2], self.xy[1::2]
        return (min(xs), min(ys), max(xs), max(ys))


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


def _sub(box: Box, *fractions: float) -> tuple[float, ...]:
    """Points given as (x, y) fractions of ``box``: two make a rectangle, more a polygon."""
    x0, y0, x1, y1 = box
    return tuple(x0 + f * (x1 - x0) if i % 2 == 0 else y0 + f * (y1 - y0)
                 for i, f in enumerate(fractions))


def _slots(box: Box, n: int) -> list[Box]:
    """``box`` cut into ``n`` equal columns, one per instance."""
    x0, y0, x1, y1 = box
    step = (x1 - x0) / n
    return [(x0 + i * step, y0, x0 + (i + 1) * step, y1) for i in range(n)]


def _row(box: Box, n: int, fy0: float, fy1: float, frac_w: float, margin: float) -> list[tuple]:
    """``n`` rectangles of width ``frac_w`` evenly spread across ``box`` (legs, supports)."""
    span = 1 - 2 * margin - frac_w
    starts = [margin + (span * i / (n - 1) if n > 1 else span / 2) for i in range(n)]
    return [_sub(box, s, fy0, s + frac_w, fy1) for s in starts]


def _draw_table(box: Box, n: int, col: list[str], feats: set[str]) -> list[Shape]:
    """Side view: a slab top, ``n`` legs below it, an optional drawer inset in the slab."""
    shapes = [Shape("rect", _sub(box, 0.0, 0.35, 1.0, 0.5), col[0])]
    if "drawer" in feats:
        shapes.append(Shape("rect", _sub(box, 0.38, 0.38, 0.62, 0.47), col[2], "drawer"))
    legs = _row(box, n, 0.5, 0.95, 0.06, 0.04)
    return shapes + [Shape("rect", xy, col[1], "leg", counted=True) for xy in legs]


def _draw_chair(box: Box, n: int, col: list[str], feats: set[str]) -> list[Shape]:
    """Side view: backrest, seat, ``n`` legs, optional armrest and seat cushion."""
    seat = (box[0] + 0.2 * (box[2] - box[0]), box[1], box[0] + 0.8 * (box[2] - box[0]), box[3])
    shapes = [
        Shape("rect", _sub(seat, 0.0, 0.1, 0.12, 0.55), col[0], "backrest"),
        Shape("rect", _sub(seat, 0.0, 0.55, 1.0, 0.63), col[0]),
    ]
    if "armrest" in feats:
        shapes.append(Shape("rect", _sub(seat, 0.12, 0.33, 0.7, 0.38), col[0], "armrest"))
    if "cushion" in feats:
        shapes.append(Shape("rect", _sub(seat, 0.15, 0.49, 0.95, 0.55), col[2], "cushion"))
    legs = _row(seat, n, 0.63, 0.95, 0.08, 0.0)
    return shapes + [Shape("rect", xy, col[1], "leg", counted=True) for xy in legs]


def _draw_flower(box: Box, n: int, col: list[str], feats: set[str]) -> list[Shape]:
    """``n`` round petals around a centre, a green stem, optional leaf and pot."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, y0 + 0.3 * (y1 - y0)
    rc = 0.12 * min(x1 - x0, y1 - y0)
    s = math.sin(math.pi / n)
    # Petal radius that keeps neighbouring petals 20% apart: each stays its own blob.
    pr = 0.8 * s * rc / (1 - 0.48 * s)
    d = rc + 0.6 * pr
    shapes = [Shape("rect", (cx - 3, cy, cx + 3, y0 + 0.85 * (y1 - y0)), "green", "stem")]
    if "leaf" in feats:
        shapes.append(Shape("ellipse", (cx + 3, cy + 2.2 * rc, cx + 3 + 2 * rc, cy + 2.8 * rc),
                            "green", "leaf"))
    if "pot" in feats:
        top, bottom = y0 + 0.78 * (y1 - y0), y1
        shapes.append(Shape("polygon", (cx - 1.6 * rc, top, cx + 1.6 * rc, top, cx + rc, bottom,
                                        cx - rc, bottom), col[2], "pot"))
    for k in range(n):
        a = 2 * math.pi * k / n - math.pi / 2
        px, py = cx + d * math.cos(a), cy + d * math.sin(a)
        shapes.append(Shape("ellipse", (px - pr, py - pr, px + pr, py + pr), col[0], "petal",
                            counted=True))
    return [*shapes, Shape("ellipse", (cx - rc, cy - rc, cx + rc, cy + rc), col[1])]


def _draw_car(box: Box, n: int, col: list[str], feats: set[str]) -> list[Shape]:
    """Side view: body and cabin, ``n`` black wheels, optional windows and headlight."""
    shapes = [
        Shape("rect", _sub(box, 0.25, 0.28, 0.72, 0.46), col[0]),
        Shape("rect", _sub(box, 0.0, 0.46, 1.0, 0.72), col[0]),
    ]
    if "window" in feats:
        shapes += [Shape("rect", _sub(box, a, 0.32, a + 0.18, 0.44), col[1], "window")
                   for a in (0.28, 0.5)]
    if "headlight" in feats:
        shapes.append(Shape("rect", _sub(box, 0.93, 0.5, 1.0, 0.57), col[2], "headlight"))
    h = box[3] - box[1]
    r = 0.1 * h
    centres = _row(box, n, 0.72, 0.72, 0.0, 0.2)
    return shapes + [Shape("ellipse", (c[0] - r, c[1] - r, c[0] + r, c[1] + r), "black", "wheel",
                           counted=True) for c in centres]


# Window places (left, top fractions): two rows; the lower middle is left to the door.
_HOUSE_SLOTS = ((0.18, 0.47), (0.44, 0.47), (0.7, 0.47), (0.18, 0.72), (0.7, 0.72))


def _draw_house(box: Box, n: int, col: list[str], feats: set[str]) -> list[Shape]:
    """Front view: wall, roof, ``n`` windows, optional door and chimney."""
    shapes = []
    if "chimney" in feats:
        shapes.append(Shape("rect", _sub(box, 0.68, 0.1, 0.78, 0.3), col[3], "chimney"))
    shapes += [
        Shape("polygon", _sub(box, 0.05, 0.4, 0.5, 0.12, 0.95, 0.4), col[1], "roof"),
        Shape("rect", _sub(box, 0.1, 0.4, 0.9, 0.97), col[0]),
    ]
    if "door" in feats:
        shapes.append(Shape("rect", _sub(box, 0.42, 0.7, 0.58, 0.97), col[4], "door"))
    for fx, fy in _HOUSE_SLOTS[:n]:
        shapes.append(Shape("rect", _sub(box, fx, fy, fx + 0.12, fy + 0.13), col[2], "window",
                            counted=True))
    return shapes


def _draw_mug(box: Box, n: int, col: list[str], feats: set[str]) -> list[Shape]:
    """``n`` mugs side by side, optional handles (ring) and a stripe inset in each body."""
    shapes = []
    for slot in _slots(box, n):
        if "handle" in feats:
            shapes.append(Shape("ring", _sub(slot, 0.58, 0.52, 0.85, 0.76), col[0], "handle",
                                width=max(3, round(0.05 * (slot[2] - slot[0])))))
        shapes.append(Shape("rect", _sub(slot, 0.15, 0.45, 0.7, 0.85), col[0], "mug",
                            counted=True))
        if "stripe" in feats:
            # Inset from both sides so the body stays one blob of its colour.
            shapes.append(Shape("rect", _sub(slot, 0.2, 0.6, 0.65, 0.68), col[1], "stripe"))
    return shapes


def _draw_lamp(box: Box, n: int, col: list[str], feats: set[str]) -> list[Shape]:
    """``n`` lamps: shade, pole and base, optional bulb under the shade and a cord."""
    shapes = []
    for slot in _slots(box, n):
        if "cord" in feats:
            shapes.append(Shape("rect", _sub(slot, 0.6, 0.93, 0.95, 0.95), col[3], "cord"))
        shapes += [
            Shape("rect", _sub(slot, 0.47, 0.38, 0.53, 0.9), col[1]),
            Shape("rect", _sub(slot, 0.3, 0.9, 0.7, 0.96), col[1]),
        ]
        if "bulb" in feats:
            shapes.append(Shape("ellipse", _sub(slot, 0.42, 0.36, 0.58, 0.46), col[2], "bulb"))
        shape = _sub(slot, 0.35, 0.15, 0.65, 0.15, 0.8, 0.38, 0.2, 0.38)
        shapes.append(Shape("polygon", shape, col[0], "shade", counted=True))
    return shapes


@dataclass(frozen=True)
class SubjectType:
    """How one object type is drawn and what truth it carries.

    Attributes:
        draw: ``draw(box, count, five distinct colours, optional features to draw)``.
        counts: the counts a scene may have.
        count_of: the item counted: a part, or the type itself (instances).
        always: features every drawing has; ``optional``: drawn with FEATURE_PROBABILITY.
        fixed_colors: colours the drawing uses whatever the picked colours (green stems).
    """

    draw: Callable[[Box, int, list[str], set[str]], list[Shape]]
    counts: tuple[int, ...]
    count_of: str
    always: tuple[str, ...]
    optional: tuple[str, ...]
    fixed_colors: tuple[str, ...] = ()


# The vocabulary of subjects: counts are chosen to include the numbers models assume (four legs,
# four wheels) and the ones they do not (two visible legs, two visible wheels).
SUBJECT_TYPES: dict[str, SubjectType] = {
    "table": SubjectType(_draw_table, (2, 3, 4, 5, 6), "leg", ("leg",), ("drawer",)),
    "chair": SubjectType(_draw_chair, (2, 3, 4), "leg", ("leg", "backrest"),
                         ("armrest", "cushion")),
    "flower": SubjectType(_draw_flower, (4, 5, 6, 7, 8), "petal", ("petal", "stem"),
                          ("leaf", "pot"), ("green",)),
    "car": SubjectType(_draw_car, (2, 3), "wheel", ("wheel",), ("window", "headlight"),
                       ("black",)),
    "house": SubjectType(_draw_house, (1, 2, 3, 4, 5), "window", ("window", "roof"),
                         ("door", "chimney")),
    "mug": SubjectType(_draw_mug, (1, 2, 3, 4), "mug", (), ("handle", "stripe")),
    "lamp": SubjectType(_draw_lamp, (1, 2, 3), "lamp", ("shade",), ("bulb", "cord")),
}
# Every feature any subject can carry: the feature vocabulary judged present or absent.
ALL_FEATURES: tuple[str, ...] = tuple(sorted(
    {f for t in SUBJECT_TYPES.values() for f in t.always + t.optional}
))


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
