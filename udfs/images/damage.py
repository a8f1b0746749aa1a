"""Why bytes did not decode: not an image at all, a damaged image, or one cut short. The
signature says what the bytes claim to be; size fields and end markers say whether the file
ends early (``udfs.images.prepare`` turns these into row statuses).
"""

from __future__ import annotations

from udfs.images.sources import SourceError

NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
DECODE_ERROR = "decode_error"
# Pillow's OSError texts for data that ends early ("image file is truncated", "Truncated File
# Read"). Its "broken data stream" means corrupt data, which is a decode_error unless the file
# also ends early (see ends_early).
_TRUNCATION_HINTS = ("truncat",)
# Signatures of formats Pillow reads: bytes that start like an image but cannot be opened are
# damaged (decode_error) or cut short (truncated) images, not "not an image". WebP's signature
# is not a prefix (RIFF, size, WEBP) and is checked in signature_format.
_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
}


def unidentified(data: bytes, source: str) -> SourceError:
    """The error for bytes Pillow cannot identify: damaged if they start like an image."""
    name = signature_format(data)
    if name is None:
        return SourceError(
            NOT_AN_IMAGE, f"{source}: not a recognised image format (starts with {data[:16]!r})"
        )
    return SourceError(
        DECODE_ERROR,
        f"{source}: starts like a {name} file but its header cannot be read ({len(data)} bytes)",
    )


def signature_format(data: bytes) -> str | None:
    """The format the first bytes announce, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    for signature, name in _SIGNATURES.items():
        if data.startswith(signature):
            return name
    return None


def ends_early(data: bytes) -> bool:
    """True when the bytes provably stop before the end of the file their signature announces:
    the RIFF (WebP) or BMP size field says more, the TIFF directory lies past the end, or the
    PNG/JPEG/GIF end marker is missing."""
    name = signature_format(data)
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


def decode_failure(err: OSError, source: str) -> SourceError:
    text = str(err)
    truncated = any(hint in text.lower() for hint in _TRUNCATION_HINTS)
    return SourceError(TRUNCATED if truncated else DECODE_ERROR, f"{source}: {text}")
