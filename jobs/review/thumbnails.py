"""Inline thumbnails for the review pages: a small base64 JPEG data URI per image, so the page
is one self-contained file that fetches nothing."""

from __future__ import annotations

import base64
import io
import logging

from udfs.images.sources import SourceError, read_bytes

log = logging.getLogger("candid.review_page")

# Thumbnails are for recognising an image, not judging it: 160 px keeps a 500-row page < 5 MB.
THUMBNAIL_MAX_SIDE = 160
THUMBNAIL_JPEG_QUALITY = 80
# Source files above this are not read for a thumbnail (the describe job has its own limit).
THUMBNAIL_MAX_SOURCE_BYTES = 50_000_000
# Decompression-bomb guard, as the describe job's default ``max_decoded_pixels``.
THUMBNAIL_MAX_PIXELS = 64_000_000


def thumbnail_data_uri(
    path_or_bytes: str | bytes, max_side: int = THUMBNAIL_MAX_SIDE
) -> str | None:
    """A base64 JPEG data URI of the image, at most ``max_side`` px on its longer side.

    Transparent pixels are put on white and the first frame of animations is used. Returns None
    (and logs why at debug level) when the file cannot be read or decoded; never raises.

    Example:
        >>> thumbnail_data_uri(b"not an image") is None
        True
    """
    try:
        data = (
            path_or_bytes
            if isinstance(path_or_bytes, bytes)
            else read_bytes(path_or_bytes, THUMBNAIL_MAX_SOURCE_BYTES)
        )
        jpeg = _jpeg_thumbnail(data, max_side)
        return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    except SourceError as err:
        log.debug("no thumbnail: %s (%s)", err.message, err.code)
    except Exception as err:  # noqa: BLE001 - Pillow raises many types; a review page must render
        log.debug("no thumbnail for %r: %s: %s", _shown(path_or_bytes), type(err).__name__, err)
    return None


def _jpeg_thumbnail(data: bytes, max_side: int) -> bytes:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        if image.width * image.height > THUMBNAIL_MAX_PIXELS:
            raise ValueError(f"{image.width}x{image.height} px is over the thumbnail budget")
        image.draft("RGB", (max_side, max_side))  # JPEG: decode at a fraction of full size
        frame = ImageOps.exif_transpose(image).convert("RGBA")
        frame.thumbnail((max_side, max_side))
        flat = Image.new("RGB", frame.size, (255, 255, 255))
        flat.paste(frame, mask=frame.getchannel("A"))
    out = io.BytesIO()
    flat.save(out, format="JPEG", quality=THUMBNAIL_JPEG_QUALITY)
    return out.getvalue()


def _shown(path_or_bytes: str | bytes) -> str:
    return f"<{len(path_or_bytes)} bytes>" if isinstance(path_or_bytes, bytes) else path_or_bytes
