"""Pixels of a decoded image: to RGB (transparency, high bit depths), resized to the engine's
grid, and measured for sharpness and low visibility (``udfs.images.prepare`` calls these in
order).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from udfs.settings import ImageSettings

# Shrinking a side by this factor or more uses area averaging: bicubic without a prefilter
# aliases fine detail. Below it (the 256 -> 252 of thumbnails) bicubic is as good and faster.
AREA_SHRINK_FACTOR = 1.25
# Side of the grayscale thumbnail the sharpness is measured on: bounded cost per image, and a
# measure that does not depend on how large the original happens to be.
SHARPNESS_SIDE = 256
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGB with transparency composited onto ``background`` and high bit depths rescaled."""
    mode = image.mode
    if mode in _HIGH_DEPTH_MODES:
        image = _rescale_to_8bit(image)
        mode = image.mode
    has_alpha = mode in _ALPHA_MODES or (
        mode in ("P", "L", "RGB", "1") and "transparency" in image.info
    )
    if not has_alpha:
        return image if mode == "RGB" else image.convert("RGB")
    rgba = image if mode == "RGBA" else image.convert("RGBA")
    if rgba.getextrema()[3] == (255, 255):
        # Fully opaque: compositing would return the same pixels, at several copies' cost.
        return rgba.convert("RGB")
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def _rescale_to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale to 8-bit.

    Data within 0..65535 is taken as 16-bit and divided by 257 (so 32768 becomes 128, and a
    flat mid-grey image stays mid-grey); Pillow's own conversion clips everything above 255 to
    white. Anything else (negative or wider integers, floats) is stretched from its own
    minimum to its maximum, since it has no fixed range.
    """
    values = np.asarray(image)
    if image.mode.startswith("I;16") or (
        image.mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535
    ):
        scaled = values.astype(np.float32) / 257.0
    else:
        wide = values.astype(np.float64)
        finite = wide[np.isfinite(wide)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        span = high - low if high > low else 1.0
        scaled = (np.nan_to_num(wide, nan=low, posinf=high, neginf=low) - low) * (255.0 / span)
    return Image.fromarray(np.rint(np.clip(scaled, 0, 255)).astype(np.uint8))


def resize_rgb(image: Image.Image, width: int, height: int) -> Image.Image:
    """Resize an RGB image with OpenCV: area averaging when a side shrinks by
    ``AREA_SHRINK_FACTOR`` or more (no aliasing), else bicubic. OpenCV's bicubic is ~6x faster
    than Pillow's, which has no SIMD path in the PyPI wheels and was half of the per-thumbnail
    cost; its area averaging is slow for the near-1 ratios of thumbnails, hence the split
    (docs/benchmarks.md)."""
    import cv2

    if cv2.getNumThreads() != 1:
        # One small image per call: worker threads cost more than they save, and they would
        # compete with the engine for the executor's cores.
        cv2.setNumThreads(1)
    shrinks = (
        width * AREA_SHRINK_FACTOR <= image.width or height * AREA_SHRINK_FACTOR <= image.height
    )
    interpolation = cv2.INTER_AREA if shrinks else cv2.INTER_CUBIC
    array = cv2.resize(np.asarray(image), (width, height), interpolation=interpolation)
    return Image.fromarray(array)


def laplacian_variance(image: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian of the grayscale image (0-255 scale), measured at
    most ``SHARPNESS_SIDE`` pixels on the long side. Low values mean blurry or flat images.

    Example:
        >>> laplacian_variance(Image.new("RGB", (64, 64), (128, 128, 128)))
        0.0
    """
    gray = image if image.mode == "L" else image.convert("L")
    if max(gray.size) > SHARPNESS_SIDE:
        scale = SHARPNESS_SIDE / max(gray.size)
        size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
        gray = gray.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    # In-place int16 arithmetic is ~3x faster than float32 here and exact: the Laplacian of
    # 8-bit values lies in [-1020, 1020]. The sums are exact in float64 too (they stay far
    # below 2**53), and float64 lets the dot product use BLAS.
    pixels = np.asarray(gray, dtype=np.int16)
    if pixels.shape[0] < 3 or pixels.shape[1] < 3:
        return 0.0
    lap = pixels[1:-1, 1:-1] * np.int16(4)
    lap -= pixels[:-2, 1:-1]
    lap -= pixels[2:, 1:-1]
    lap -= pixels[1:-1, :-2]
    lap -= pixels[1:-1, 2:]
    flat = lap.ravel().astype(np.float64)
    count = flat.size
    total = float(flat.sum())
    return float((float(flat @ flat) - total * total / count) / count)


def is_low_visibility(
    width: int, height: int, sharpness: float, settings: ImageSettings
) -> bool:
    """True when the image is too small (longer side at most ``low_visibility_max_side``) or too
    blurry/flat (sharpness below ``low_visibility_min_sharpness``) to describe reliably."""
    return bool(
        max(width, height) <= settings.low_visibility_max_side
        or sharpness < settings.low_visibility_min_sharpness
    )
