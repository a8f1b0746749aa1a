"""The objects of the synthetic scenes (``udfs.evaluation.scenes``): the flat colours they are
painted in, the primitive shapes they are made of, and how each object type of the vocabulary
is drawn, with the parts it counts and the features it may carry.

Each ``_draw_<type>(box, n, colours, features)`` returns the shapes of one object: ``n`` counted
parts (legs, petals, wheels, windows) or ``n`` instances (mugs, lamps), in five distinct colours,
with the optional features asked for. The truth a scene states is read back from these shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# Flat named colours; names are the colour vocabulary that udfs.evaluation.vocabulary matches.
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
