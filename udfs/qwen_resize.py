"""Qwen2-VL's image resize rule, computed before the engine sees an image.

The engine's processor resizes every image with ``smart_resize`` under the same
``min_pixels``/``max_pixels``. Doing it here first lets Candid reject images the processor would
fail on (one bad image must never fail a whole ``generate`` call), count visual tokens per row,
and hand both engines identical pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from udfs.settings import QWEN_PATCH_FACTOR

# Each visual token covers a 2x2 merge of 14 px patches: 28 x 28 pixels.
PIXELS_PER_VISUAL_TOKEN = QWEN_PATCH_FACTOR * QWEN_PATCH_FACTOR


class ResizeError(ValueError):
    """The image cannot be made valid for Qwen2-VL (its own processor would raise)."""


@dataclass(frozen=True)
class ResizePlan:
    width: int
    height: int

    @property
    def visual_tokens(self) -> int:
        return (self.width * self.height) // PIXELS_PER_VISUAL_TOKEN


def smart_resize(
    height: int,
    width: int,
    *,
    min_pixels: int,
    max_pixels: int,
    factor: int = QWEN_PATCH_FACTOR,
    max_aspect_ratio: float = 200.0,
) -> ResizePlan:
    """Target size under Qwen2-VL's rule: both sides multiples of ``factor``, area within
    [min_pixels, max_pixels], aspect ratio kept as closely as possible.

    Same arithmetic as the processor's ``smart_resize``; in addition the result is checked, so
    sizes the processor would pass on and the engine then reject are raised here instead.

    Raises:
        ResizeError: non-positive size, aspect ratio of ``max_aspect_ratio`` or more, or bounds
            that cannot be met.
    """
    if height <= 0 or width <= 0:
        raise ResizeError(f"image has no pixels ({width}x{height})")
    ratio = max(height, width) / min(height, width)
    if ratio >= max_aspect_ratio:
        raise ResizeError(
            f"aspect ratio {ratio:.1f}:1 is at or above the limit {max_aspect_ratio:g}:1"
        )
    if min_pixels > max_pixels:
        raise ResizeError(f"min_pixels {min_pixels} > max_pixels {max_pixels}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if not (min(h_bar, w_bar) >= factor and min_pixels <= h_bar * w_bar <= max_pixels):
        # Thin images: the short side is held at `factor` while the long side is scaled, so the
        # area can leave the bounds; the processor would pass such a size on to the engine.
        raise ResizeError(
            f"{width}x{height} has no size within [{min_pixels}, {max_pixels}] pixels "
            f"with both sides multiples of {factor} (got {w_bar}x{h_bar})"
        )
    return ResizePlan(width=w_bar, height=h_bar)
