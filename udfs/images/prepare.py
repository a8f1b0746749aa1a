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

from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from udfs.images.damage import (
    DECODE_ERROR,
    TRUNCATED,
    decode_failure,
    ends_early,
    signature_format,
    unidentified,
)
from udfs.images.pixels import is_low_visibility, laplacian_variance, resize_rgb, to_rgb
from udfs.images.qwen_resize import ResizeError, ResizePlan, smart_resize
from udfs.images.sources import FILE_TOO_LARGE, SourceError, read_bytes
from udfs.settings import ImageSettings

STATUS_OK = "ok"
EMPTY_FILE = "empty_file"
DECOMPRESSION_BOMB = "decompression_bomb"
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
    except SourceError as err:
        status, message = err.code, err.message
    except Exception as err:  # noqa: BLE001 - decoders raise many types on malformed data
        # Recorded with its type and text, never swallowed: the row says what happened.
        status, message = DECODE_ERROR, f"{source}: {type(err).__name__}: {err}"
    else:
        return PreparedImage(status=STATUS_OK, image=image, metrics=metrics)
    if status == DECODE_ERROR and ends_early(data):
        # Decoders word a cut-off file in many ways; the missing end of the file is the cause.
        status = TRUNCATED
        message += f"; the file ends before a complete {signature_format(data)} file would"
    return PreparedImage(status=status, message=message, metrics=metrics)


def _decode_and_prepare(
    data: bytes, source: str, settings: ImageSettings, metrics: dict[str, Any]
) -> Image.Image:
    if not data:
        raise SourceError(EMPTY_FILE, f"{source}: file is empty (0 bytes)")
    if len(data) > settings.max_file_bytes:
        raise SourceError(
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
    rgb = to_rgb(image, settings.background_rgb)
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
        raise SourceError(DECOMPRESSION_BOMB, f"{source}: {err}") from None
    except UnidentifiedImageError:
        raise unidentified(data, source) from None
    except OSError as err:
        raise decode_failure(err, source) from None
    width, height = image.size
    if width * height > settings.max_decoded_pixels:
        raise SourceError(
            DECOMPRESSION_BOMB,
            f"{source}: header declares {width}x{height} = {width * height} pixels "
            f"> budget {settings.max_decoded_pixels}",
        )
    return image


def _orientation(image: Image.Image, source: str) -> int:
    """The EXIF orientation (1 = upright). Pillow decodes a PNG that has no EXIF chunk before
    its pixels, to look for one after them, so decoding errors are mapped as for ``load``."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except OSError as err:
        raise decode_failure(err, source) from None
    return orientation if isinstance(orientation, int) else 1


def _plan(width: int, height: int, source: str, settings: ImageSettings) -> ResizePlan:
    try:
        return smart_resize(
            height, width,
            min_pixels=settings.min_pixels, max_pixels=settings.max_pixels,
            max_aspect_ratio=settings.max_aspect_ratio,
        )
    except ResizeError as err:
        raise SourceError(err.code, f"{source}: {err}") from None


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
        raise decode_failure(err, source) from None
    return image
