"""Decode, check and resize one image for Qwen2-VL, and measure how much it can show.

``prepare_image`` never raises for bad input: every problem becomes a ``PreparedImage`` with a
stable status code and a message naming the file and the cause. Pillow's process-wide settings
(``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``) are never changed: the budgets are checked here
per call, from the settings.

Status codes (besides ``sources``' codes for reading the bytes):

* ``ok``: ``image`` is RGB, sized to Qwen2-VL's grid;
* ``empty_file``, ``file_too_large``: judged on the bytes alone;
* ``not_an_image``: no image format recognised (text, HTML, ...);
* ``decompression_bomb``: the header declares more pixels than ``max_decoded_pixels``;
* ``truncated``: the data ends early: the decoder says so, or decoding failed on bytes whose
  size field or missing end marker shows the file is cut short;
* ``extreme_aspect_ratio``: ``max_aspect_ratio`` (200:1) or more;
* ``invalid_size``: no size on the 28-px grid suits Qwen2-VL: none meets ``min_pixels``/
  ``max_pixels`` (thin images under tight budgets), or the grid size's own aspect ratio
  reaches the limit (very thin images: 60x11900 would become 28x8904);
* ``decode_error``: anything else the decoder refused, with the exception's type and text.

How pixels are made RGB: EXIF orientation is applied (so widths and heights are as displayed);
frame 0 of animations is used; transparency is composited onto ``background_rgb``; 16-bit
grayscale is rescaled by its full range (65535 -> 255), not clipped.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from udfs.images.qwen_resize import ResizeError, ResizePlan, smart_resize
from udfs.images.sources import FILE_TOO_LARGE, SourceError, read_bytes
from udfs.settings import ImageSettings

STATUS_OK = "ok"
# Shrinking a side by this factor or more uses area averaging: bicubic without a prefilter
# aliases fine detail. Below it (the 256 -> 252 of thumbnails) bicubic is as good and faster.
AREA_SHRINK_FACTOR = 1.25
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
DECOMPRESSION_BOMB = "decompression_bomb"
TRUNCATED = "truncated"
DECODE_ERROR = "decode_error"

# Side of the grayscale thumbnail the sharpness is measured on: bounded cost per image, and a
# measure that does not depend on how large the original happens to be.
SHARPNESS_SIDE = 256
_EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that displays the image upright (as ImageOps.exif_transpose;
# done here so an upright image, the common case, costs no copy).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
# Pillow's OSError texts for data that ends early ("image file is truncated", "Truncated File
# Read"). Its "broken data stream" means corrupt data, which is a decode_error unless the file
# also ends early (see _ends_early).
_TRUNCATION_HINTS = ("truncat",)
# Signatures of formats Pillow reads: bytes that start like an image but cannot be opened are
# damaged (decode_error) or cut short (truncated) images, not "not an image". WebP's signature
# is not a prefix (RIFF, size, WEBP) and is checked in _signature_format.
_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageError(Exception):
    """A per-image problem; ``code`` becomes the row's status."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class PreparedImage:
    """The outcome for one image: an RGB image sized for the engine, or a status code.

    ``metrics`` holds the evidence columns known so far (all of them for ``ok`` images):
    content_sha256, file_bytes, image_format, orig_width, orig_height (as displayed, after EXIF
    orientation), frames, sharpness, input_width, input_height, visual_tokens, low_visibility.
    """

    status: str
    message: str | None = None
    image: Image.Image | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when ``image`` is ready for the engine."""
        return self.status == STATUS_OK


def load_image(path: str, settings: ImageSettings) -> PreparedImage:
    """Read ``path`` (local, ``file:`` or fsspec URL) and prepare it; never raises for bad input.

    Example:
        >>> load_image("/no/such.jpg", ImageSettings()).status
        'missing_file'
    """
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

    Returns:
        ``status == "ok"`` with an RGB image of ``(input_width, input_height)``, or a status code
        and a message ``"<source>: <cause>"``. Never raises for bad data.
    """
    metrics: dict[str, Any] = {
        "content_sha256": hashlib.sha256(data).hexdigest(),
        "file_bytes": len(data),
    }
    try:
        image = _decode_and_prepare(data, source, settings, metrics)
    except ImageError as err:
        status, message = err.code, err.message
    except Exception as err:  # noqa: BLE001 - decoders raise many types on malformed data
        # Recorded with its type and text, never swallowed: the row says what happened.
        status, message = DECODE_ERROR, f"{source}: {type(err).__name__}: {err}"
    else:
        return PreparedImage(status=STATUS_OK, image=image, metrics=metrics)
    if status == DECODE_ERROR and _ends_early(data):
        # Decoders word a cut-off file in many ways; the missing end of the file is the cause.
        status = TRUNCATED
        message += f"; the file ends before a complete {_signature_format(data)} file would"
    return PreparedImage(status=status, message=message, metrics=metrics)


def _decode_and_prepare(
    data: bytes, source: str, settings: ImageSettings, metrics: dict[str, Any]
) -> Image.Image:
    if not data:
        raise ImageError(EMPTY_FILE, f"{source}: file is empty (0 bytes)")
    if len(data) > settings.max_file_bytes:
        raise ImageError(
            FILE_TOO_LARGE, f"{source}: {len(data)} bytes > limit {settings.max_file_bytes}"
        )
    image = _open_checked(data, source, settings)
    metrics["image_format"] = image.format
    metrics["frames"] = int(getattr(image, "n_frames", 1) or 1)
    orientation = _orientation(image, source)
    swapped = orientation in _SWAPPING_ORIENTATIONS
    width, height = image.size[::-1] if swapped else image.size
    metrics["orig_width"], metrics["orig_height"] = width, height
    plan = _plan(width, height, source, settings)
    # Everything up to the final transpose works in stored (pre-rotation) orientation: the
    # JPEG draft needs it, and transposing the small resized image is cheaper than the original.
    stored_plan = plan.transposed() if swapped else plan
    image = _load_first_frame(image, source, (stored_plan.width, stored_plan.height))
    rgb = _to_rgb(image, settings.background_rgb)
    # The 4-neighbour Laplacian is unchanged by flips and quarter turns, so the stored
    # orientation gives the same sharpness as the displayed one.
    metrics["sharpness"] = laplacian_variance(rgb)
    if rgb.size != (stored_plan.width, stored_plan.height):
        rgb = resize_rgb(rgb, stored_plan.width, stored_plan.height)
    if orientation in _ORIENTATION_TRANSPOSE:
        rgb = rgb.transpose(_ORIENTATION_TRANSPOSE[orientation])
    metrics["input_width"], metrics["input_height"] = plan.width, plan.height
    metrics["visual_tokens"] = plan.visual_tokens
    metrics["low_visibility"] = is_low_visibility(width, height, metrics["sharpness"], settings)
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
        raise ImageError(DECOMPRESSION_BOMB, f"{source}: {err}") from None
    except UnidentifiedImageError:
        raise _unidentified(data, source) from None
    except OSError as err:
        raise _decode_failure(err, source) from None
    width, height = image.size
    if width * height > settings.max_decoded_pixels:
        raise ImageError(
            DECOMPRESSION_BOMB,
            f"{source}: header declares {width}x{height} = {width * height} pixels "
            f"> budget {settings.max_decoded_pixels}",
        )
    return image


def _unidentified(data: bytes, source: str) -> ImageError:
    """The error for bytes Pillow cannot identify: damaged if they start like an image."""
    name = _signature_format(data)
    if name is None:
        return ImageError(
            NOT_AN_IMAGE, f"{source}: not a recognised image format (starts with {data[:16]!r})"
        )
    return ImageError(
        DECODE_ERROR,
        f"{source}: starts like a {name} file but its header cannot be read ({len(data)} bytes)",
    )


def _signature_format(data: bytes) -> str | None:
    """The format the first bytes announce, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    for signature, name in _SIGNATURES.items():
        if data.startswith(signature):
            return name
    return None


def _ends_early(data: bytes) -> bool:
    """True when the bytes provably stop before the end of the file their signature announces:
    the RIFF (WebP) or BMP size field says more, the TIFF directory lies past the end, or the
    PNG/JPEG/GIF end marker is missing."""
    name = _signature_format(data)
    if name == "WebP":
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    if name == "BMP":
        return len(data) < 6 or int.from_bytes(data[2:6], "little") > len(data)
    if name == "PNG":
        return b"IEND" not in data[-12:]
    if name == "JPEG":
        # Searched anywhere: entropy-coded data never contains FF D9, and some writers append
        # bytes after the end marker.
        return b"\xff\xd9" not in data
    if name == "GIF":
        return not data.endswith(b";")
    if name == "TIFF":
        return _tiff_directory_cut(data)
    return False


def _tiff_directory_cut(data: bytes) -> bool:
    """True when the first TIFF tag directory (2-byte count, 12 bytes a tag, 4-byte link) does
    not fit in the bytes: the header is unreadable because the file stops inside it."""
    order = "little" if data[:2] == b"II" else "big"
    if len(data) < 8:
        return True
    offset = int.from_bytes(data[4:8], order)
    if offset + 2 > len(data):
        return True
    count = int.from_bytes(data[offset : offset + 2], order)
    return offset + 2 + 12 * count + 4 > len(data)


def _decode_failure(err: OSError, source: str) -> ImageError:
    text = str(err)
    truncated = any(hint in text.lower() for hint in _TRUNCATION_HINTS)
    return ImageError(TRUNCATED if truncated else DECODE_ERROR, f"{source}: {text}")


def _orientation(image: Image.Image, source: str) -> int:
    """The EXIF orientation (1 = upright). Pillow decodes a PNG that has no EXIF chunk before
    its pixels, to look for one after them, so decoding errors are mapped as for ``load``."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except OSError as err:
        raise _decode_failure(err, source) from None
    return orientation if isinstance(orientation, int) else 1


def _plan(width: int, height: int, source: str, settings: ImageSettings) -> ResizePlan:
    try:
        return smart_resize(
            height, width,
            min_pixels=settings.min_pixels, max_pixels=settings.max_pixels,
            max_aspect_ratio=settings.max_aspect_ratio,
        )
    except ResizeError as err:
        raise ImageError(err.code, f"{source}: {err}") from None


def _load_first_frame(image: Image.Image, source: str, draft: tuple[int, int]) -> Image.Image:
    """Decode frame 0. Large JPEGs are decoded at a reduced scale (DCT draft) when the target is
    much smaller: a fraction of the work, and the result is downscaled anyway."""
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        if isinstance(image, JpegImagePlugin.JpegImageFile):  # JPEG, and MPO camera files
            image.draft("RGB", draft)
        image.load()
    except OSError as err:
        raise _decode_failure(err, source) from None
    return image


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
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
