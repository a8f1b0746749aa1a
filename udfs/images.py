"""Decode, check and resize one image for Qwen2-VL, and measure how much it can show.

``prepare_image`` never raises for bad input: every problem becomes a ``PreparedImage`` with a
stable status code and a message naming the file and the cause. Pillow's process-wide settings
(``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``) are never changed: the budgets are checked here
per call, from the settings.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from udfs.qwen_resize import ResizeError, smart_resize
from udfs.settings import ImageSettings
from udfs.sources import SourceError, read_bytes

STATUS_OK = "ok"
# Side of the grayscale thumbnail the sharpness is measured on: bounded cost per image, and a
# measure that does not depend on how large the original happens to be.
SHARPNESS_SIDE = 256
# EXIF orientations 5-8 swap width and height.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION_TAG = 0x0112


class ImageError(Exception):
    """A per-image problem; ``code`` becomes the row's status."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class PreparedImage:
    """The outcome for one image: an RGB image sized for the engine, or a status code."""

    status: str
    message: str | None = None
    image: Image.Image | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


def load_image(path: str, settings: ImageSettings) -> PreparedImage:
    """Read ``path`` and prepare it; never raises for bad input."""
    try:
        data = read_bytes(path, settings.max_file_bytes)
    except SourceError as err:
        return PreparedImage(status=err.code, message=err.message)
    return prepare_image(data, path, settings)


def prepare_image(data: bytes, source: str, settings: ImageSettings) -> PreparedImage:
    """Decode ``data``, convert it to RGB, resize it to Qwen2-VL's grid, and measure it.

    Args:
        data: the file's bytes.
        source: the path, only used in messages.
        settings: pixel budgets, background colour and low-visibility thresholds.
    """
    metrics: dict[str, Any] = {
        "content_sha256": hashlib.sha256(data).hexdigest(),
        "file_bytes": len(data),
    }
    try:
        image = _decode_and_prepare(data, source, settings, metrics)
    except ImageError as err:
        return PreparedImage(status=err.code, message=err.message, metrics=metrics)
    except Exception as err:  # noqa: BLE001 - decoders raise many types on malformed data
        # Recorded with its type and text, never swallowed: the row says what happened.
        return PreparedImage(
            status="decode_error",
            message=f"{source}: {type(err).__name__}: {err}",
            metrics=metrics,
        )
    return PreparedImage(status=STATUS_OK, image=image, metrics=metrics)


def _decode_and_prepare(
    data: bytes, source: str, settings: ImageSettings, metrics: dict[str, Any]
) -> Image.Image:
    if not data:
        raise ImageError("empty_file", f"{source}: file is empty (0 bytes)")
    if len(data) > settings.max_file_bytes:
        raise ImageError(
            "file_too_large", f"{source}: {len(data)} bytes > limit {settings.max_file_bytes}"
        )
    image = _open_checked(data, source, settings)
    metrics["image_format"] = image.format
    metrics["frames"] = int(getattr(image, "n_frames", 1) or 1)
    width, height = _displayed_size(image)
    metrics["orig_width"], metrics["orig_height"] = width, height
    try:
        plan = smart_resize(
            height, width,
            min_pixels=settings.min_pixels, max_pixels=settings.max_pixels,
            max_aspect_ratio=settings.max_aspect_ratio,
        )
    except ResizeError as err:
        code = "extreme_aspect_ratio" if "aspect ratio" in str(err) else "invalid_size"
        raise ImageError(code, f"{source}: {err}") from None
    # The draft size is in stored (pre-rotation) order.
    swapped = (width, height) != image.size
    draft = (plan.height, plan.width) if swapped else (plan.width, plan.height)
    image = _load_first_frame(image, source, draft)
    rgb = _to_rgb(ImageOps.exif_transpose(image), settings.background_rgb)
    metrics["sharpness"] = laplacian_variance(rgb)
    metrics["input_width"], metrics["input_height"] = plan.width, plan.height
    metrics["visual_tokens"] = plan.visual_tokens
    metrics["low_visibility"] = bool(
        max(width, height) <= settings.low_visibility_max_side
        or metrics["sharpness"] < settings.low_visibility_min_sharpness
    )
    if rgb.size != (plan.width, plan.height):
        rgb = rgb.resize((plan.width, plan.height), Image.Resampling.BICUBIC)
    return rgb


def _open_checked(data: bytes, source: str, settings: ImageSettings) -> Image.Image:
    """Open (header only) and enforce the decompression-bomb budget before any decoding."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (and above 2x its global limit raises) on huge headers; the budget
            # that applies is ours, checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageError("decompression_bomb", f"{source}: {err}") from None
    except UnidentifiedImageError:
        head = data[:16]
        raise ImageError(
            "not_an_image", f"{source}: not a recognised image format (starts with {head!r})"
        ) from None
    width, height = image.size
    if width * height > settings.max_decoded_pixels:
        raise ImageError(
            "decompression_bomb",
            f"{source}: header declares {width}x{height} = {width * height} pixels "
            f"> budget {settings.max_decoded_pixels}",
        )
    return image


def _displayed_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not hide the image itself
        orientation = 1
    if orientation in _SWAPPING_ORIENTATIONS:
        return height, width
    return width, height


def _load_first_frame(image: Image.Image, source: str, draft: tuple[int, int]) -> Image.Image:
    """Decode frame 0. Large JPEGs are decoded at a reduced scale (DCT draft) when the target is
    much smaller: a fraction of the work, and the result is downscaled anyway."""
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        if image.format == "JPEG":
            image.draft("RGB", draft)
        image.load()
    except OSError as err:
        text = str(err)
        code = "truncated" if "truncat" in text or "broken data" in text else "decode_error"
        raise ImageError(code, f"{source}: {text}") from None
    return image


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGB with transparency composited onto ``background`` and high bit depths rescaled."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _rescale_to_8bit(image)
        mode = image.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    ) or (mode in ("L", "RGB") and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _rescale_to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale to 8-bit. 16-bit data uses its full range (so a
    mid-grey stays mid-grey); wider types are stretched from their own min to max."""
    array = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = array.astype(np.float32) / 257.0
    else:
        values = array.astype(np.float64)
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        span = high - low if high > low else 1.0
        scaled = (np.nan_to_num(values, nan=low) - low) * (255.0 / span)
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L")


def laplacian_variance(image: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian of the grayscale image (0-255 scale), measured at
    most ``SHARPNESS_SIDE`` pixels on the long side. Low values mean blurry or flat images."""
    gray = image.convert("L")
    if max(gray.size) > SHARPNESS_SIDE:
        gray = gray.copy()
        gray.thumbnail((SHARPNESS_SIDE, SHARPNESS_SIDE), Image.Resampling.BILINEAR)
    pixels = np.asarray(gray, dtype=np.float32)
    if pixels.shape[0] < 3 or pixels.shape[1] < 3:
        return 0.0
    lap = (
        4 * pixels[1:-1, 1:-1]
        - pixels[:-2, 1:-1] - pixels[2:, 1:-1] - pixels[1:-1, :-2] - pixels[1:-1, 2:]
    )
    return float(lap.var())
