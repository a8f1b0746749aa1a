"""Qwen2-VL's image resize rule, computed before the engine sees an image.

The engine's processor resizes every image with ``smart_resize`` under the same
``min_pixels``/``max_pixels``. Doing it here first lets Candid reject images the processor would
fail on (one bad image must never fail a whole ``generate`` call), count visual tokens per row,
and hand both engines identical pixels.

Three things are stricter than the processor, all on purpose:

* an aspect ratio of exactly ``max_aspect_ratio`` (200:1) is rejected (the processor rejects
  only ratios above 200), so the limit reads the same in the settings and in the status;
* a result the processor would return although it breaks its own rule (short side below 28 px,
  or area outside ``[min_pixels, max_pixels]``) raises here; the processor passes such sizes on
  and the model then fails on them;
* a result whose own aspect ratio reaches the limit raises here. Flooring the short side to a
  multiple of 28 can nearly halve it (60 x 11900, ratio 198, becomes 28 x 8904, ratio 318).
  The processor resizes the original without complaint, but Candid hands it the resized
  image, and on that it would raise: the image would fail its whole batch.

Everywhere else the arithmetic is the processor's, line for line, so a size planned here is a
fixed point of the processor's ``smart_resize``: it does not resize our output again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from udfs.settings import QWEN_PATCH_FACTOR

# Each visual token covers a 2x2 merge of 14 px patches: 28 x 28 pixels.
PIXELS_PER_VISUAL_TOKEN = QWEN_PATCH_FACTOR * QWEN_PATCH_FACTOR
# Status codes for the two ways an image can fail the rule; they become result rows' status.
EXTREME_ASPECT_RATIO = "extreme_aspect_ratio"
INVALID_SIZE = "invalid_size"


class ResizeError(ValueError):
    """The image cannot be made valid for Qwen2-VL (its own processor would raise or produce a
    size the model rejects).

    Attributes:
        code: ``EXTREME_ASPECT_RATIO`` or ``INVALID_SIZE``, usable as a row status.
    """

    def __init__(self, message: str, code: str = INVALID_SIZE):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ResizePlan:
    """The size an image is resized to before it reaches the engine."""

    width: int
    height: int

    @property
    def visual_tokens(self) -> int:
        """Tokens the image costs in the prompt: one per 28x28 block."""
        return (self.width * self.height) // PIXELS_PER_VISUAL_TOKEN

    def transposed(self) -> ResizePlan:
        """The same plan with width and height swapped (for EXIF-rotated images)."""
        return ResizePlan(width=self.height, height=self.width)


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
    sizes the processor would pass on and the engine then reject are raised here instead. The
    rule is symmetric: swapping ``height`` and ``width`` swaps the result.

    Example:
        >>> smart_resize(256, 256, min_pixels=3136, max_pixels=401408)
        ResizePlan(width=252, height=252)

    Raises:
        ResizeError: non-positive size (``invalid_size``), aspect ratio of ``max_aspect_ratio``
            or more (``extreme_aspect_ratio``), bounds that cannot be met, or a planned size
            whose own aspect ratio reaches the limit (both ``invalid_size``).
    """
    if height <= 0 or width <= 0:
        raise ResizeError(f"image has no pixels ({width}x{height})")
    ratio = max(height, width) / min(height, width)
    if ratio >= max_aspect_ratio:
        raise ResizeError(
            f"aspect ratio {ratio:.1f}:1 is at or above the limit {max_aspect_ratio:g}:1",
            code=EXTREME_ASPECT_RATIO,
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
    planned_ratio = max(h_bar, w_bar) / min(h_bar, w_bar)
    if planned_ratio >= max_aspect_ratio:
        raise ResizeError(
            f"{width}x{height} would be resized to {w_bar}x{h_bar}, aspect ratio "
            f"{planned_ratio:.1f}:1, which the processor refuses (limit {max_aspect_ratio:g}:1)"
        )
    return ResizePlan(width=w_bar, height=h_bar)
