"""``udfs.images.prepare``: every bad input becomes a status row; every good one a grid-sized RGB image.

All fixtures are generated here with Pillow (nothing binary is checked in), so each test shows
exactly what it feeds the loader.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import struct
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageFilter, ImageOps, JpegImagePlugin, features

from udfs.images.pixels import laplacian_variance
from udfs.images.prepare import PreparedImage, load_image, prepare_image
from udfs.runner.describe import RESULT_COLUMN_NAMES
from udfs.settings import QWEN_PATCH_FACTOR, ImageSettings

DEFAULTS = ImageSettings()
# A background no decoder produces by accident: a transparent pixel that comes out black or
# white was not composited onto it.
GREEN_BACKGROUND = ImageSettings(background_rgb=(10, 200, 30))
METRIC_KEYS = {
    "content_sha256", "file_bytes", "image_format", "orig_width", "orig_height", "frames",
    "sharpness", "input_width", "input_height", "visual_tokens", "low_visibility",
}
RED, BLUE = (255, 0, 0), (0, 0, 255)
CheckReady = Callable[[PreparedImage, ImageSettings], Image.Image]


# ---------------------------------------------------------------- fixture builders


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """``image`` saved as ``fmt``, in memory."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """Blocky colour noise: detailed enough that truncation always hits pixel data."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, height // 4), max(1, width // 4), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.NEAREST)
    return image if mode == "RGB" else image.convert(mode)


def checkerboard(side: int, square: int = 8) -> Image.Image:
    """Black and white squares: the sharpest possible content."""
    cells = (np.indices((side, side)) // square).sum(axis=0) % 2
    return Image.fromarray((cells * 255).astype(np.uint8))


def halves(left: tuple[int, ...], right: tuple[int, ...], mode: str, size=(40, 40)) -> Image.Image:
    """An image whose left half is ``left`` and right half ``right``."""
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and header declaring ``width`` x ``height``, with almost no data:
    the shape of a decompression bomb, without needing the memory to build one."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def _corrupt_png_data() -> bytes:
    """A complete PNG (it ends with IEND) whose compressed pixel data is garbage."""
    data = bytearray(encode(noise(64, 64), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 2 : start + 200] = bytes(range(198))
    return bytes(data)


def truncated(data: bytes, fraction: float = 0.6) -> bytes:
    """``data`` cut so that Pillow opens it but cannot load it (asserted, so the fixture is
    what its name says)."""
    cut = data[: int(len(data) * fraction)]
    image = Image.open(io.BytesIO(cut))
    with pytest.raises(OSError):
        image.load()
    return cut


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def mean_rgb(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(image.crop(box), dtype=np.float64).reshape(-1, 3).mean(axis=0)


# ---------------------------------------------------------------- shared checks


@pytest.fixture(autouse=True)
def pillow_globals_untouched() -> Iterator[None]:
    """The loader must never change process-wide Pillow or warnings settings."""
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    yield
    after = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    assert after == before


@pytest.fixture(scope="module")
def check_ready() -> CheckReady:
    """Asserts an ``ok`` result is what the engine can take, including that Qwen2-VL's own
    processor would not resize it again (a fixed point of transformers' smart_resize)."""
    # A plain import: if transformers moves this module, these fixed-point tests must fail,
    # not skip (the engines' processor is what they pin us to).
    hf = importlib.import_module("transformers.models.qwen2_vl.image_processing_qwen2_vl")

    def check(result: PreparedImage, image_settings: ImageSettings) -> Image.Image:
        assert result.status == "ok", result.message
        image, m = result.image, result.metrics
        assert image is not None and image.mode == "RGB"
        assert set(m) == METRIC_KEYS
        assert image.size == (m["input_width"], m["input_height"])
        width, height = image.size
        assert width % QWEN_PATCH_FACTOR == 0 and height % QWEN_PATCH_FACTOR == 0
        assert image_settings.min_pixels <= width * height <= image_settings.max_pixels
        assert m["visual_tokens"] == width * height // 784
        assert hf.smart_resize(
            height, width, factor=QWEN_PATCH_FACTOR,
            min_pixels=image_settings.min_pixels, max_pixels=image_settings.max_pixels,
        ) == (height, width)
        return image

    return check


def test_metric_keys_are_result_columns() -> None:
    assert set(RESULT_COLUMN_NAMES) >= METRIC_KEYS


# ---------------------------------------------------------------- bad inputs


def _bomb_settings() -> ImageSettings:
    return ImageSettings(max_decoded_pixels=10_000)


BAD_INPUTS = [
    # id, file name, bytes builder, settings, status, words the message must contain
    ("empty", "empty.jpg", lambda: b"", DEFAULTS, "empty_file", ["empty", "0 bytes"]),
    ("html", "page.jpg", lambda: b"<!DOCTYPE html><html><body>404</body></html>", DEFAULTS,
     "not_an_image", ["not a recognised image format", "<!DOCTYPE html>"]),
    ("text", "notes.png", lambda: "just text, ünïcode\n".encode(), DEFAULTS,
     "not_an_image", ["not a recognised image format", "just text"]),
    ("truncated-jpeg", "cut.jpg", lambda: truncated(encode(noise(200, 150), "JPEG")), DEFAULTS,
     "truncated", ["truncated"]),
    ("truncated-png", "cut.png", lambda: truncated(encode(noise(200, 150), "PNG")), DEFAULTS,
     "truncated", ["truncated"]),
    ("cut-in-header", "head.jpg", lambda: encode(noise(50, 50), "JPEG")[:100], DEFAULTS,
     "truncated", ["Truncated File Read"]),
    ("png-cut-in-header", "head.png", lambda: encode(noise(50, 50), "PNG")[:40], DEFAULTS,
     "truncated", ["starts like a PNG file", "ends before a complete PNG file would"]),
    ("truncated-webp", "cut.webp", lambda: encode(noise(200, 150), "WEBP")[:300], DEFAULTS,
     "truncated", ["ends before a complete WebP file would"]),
    ("damaged-jpeg-header", "bad.jpg", lambda: b"\xff\xd8\xff" + b"\x00" * 40 + b"\xff\xd9",
     DEFAULTS, "decode_error", ["starts like a JPEG file", "header cannot be read"]),
    ("damaged-png-data", "bad.png", lambda: _corrupt_png_data(), DEFAULTS,
     "decode_error", ["broken data stream"]),
    ("bomb-over-our-budget", "bomb.png", lambda: png_header_only(10_000, 10_000), DEFAULTS,
     "decompression_bomb", ["10000x10000 = 100000000 pixels", "budget 64000000"]),
    ("bomb-over-pillow-limit", "huge.png", lambda: png_header_only(30_000, 30_000), DEFAULTS,
     "decompression_bomb", ["900000000 pixels", "decompression bomb"]),
    ("small-budget", "real.png", lambda: encode(noise(200, 100), "PNG"), _bomb_settings(),
     "decompression_bomb", ["200x100 = 20000 pixels", "budget 10000"]),
    ("ratio-200", "strip.png", lambda: encode(noise(2000, 10), "PNG"), DEFAULTS,
     "extreme_aspect_ratio", ["aspect ratio 200.0:1", "limit 200:1"]),
    ("ratio-300-tall", "tall.png", lambda: encode(noise(3, 900), "PNG"), DEFAULTS,
     "extreme_aspect_ratio", ["aspect ratio 300.0:1"]),
    ("planned-ratio-318", "long.png", lambda: encode(noise(11900, 60), "PNG"), DEFAULTS,
     "invalid_size", ["11900x60 would be resized to 8904x28", "processor refuses"]),
    ("thin-tight-budget", "thin.png", lambda: encode(noise(1500, 10), "PNG"),
     ImageSettings(min_pixels=3136, max_pixels=3136), "invalid_size",
     ["1500x10 has no size within [3136, 3136]"]),
    ("too-many-bytes", "fat.png", lambda: encode(noise(64, 64), "PNG"),
     ImageSettings(max_file_bytes=100), "file_too_large", ["> limit 100"]),
]


@pytest.mark.parametrize(
    ("name", "build", "image_settings", "status", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS],
)
def test_bad_input_becomes_a_status(
    tmp_path: Path, name: str, build: Callable[[], bytes], image_settings: ImageSettings,
    status: str, words: list[str],
) -> None:
    data = build()
    path = write(tmp_path, name, data)
    for result in (load_image(path, image_settings), prepare_image(data, path, image_settings)):
        assert (result.status, result.image) == (status, None), result.message
        assert result.message is not None and result.message.startswith(f"{path}: ")
        for word in words:
            assert word in result.message


def test_bytes_metrics_are_kept_for_failures(tmp_path: Path) -> None:
    data = b"<html></html>"
    result = prepare_image(data, "x.jpg", DEFAULTS)
    assert result.metrics == {
        "content_sha256": hashlib.sha256(data).hexdigest(), "file_bytes": len(data),
    }
    strip = prepare_image(encode(noise(2000, 10), "PNG"), "strip.png", DEFAULTS)
    assert (strip.metrics["orig_width"], strip.metrics["orig_height"]) == (2000, 10)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone.jpg")
    result = load_image(missing, DEFAULTS)
    assert result.status == "missing_file" and result.message.startswith(missing)
    result = load_image(str(tmp_path), DEFAULTS)
    assert result.status == "is_directory" and str(tmp_path) in result.message


def test_unsupported_source_through_load_image() -> None:
    result = load_image("nosuchproto://bucket/a.jpg", DEFAULTS)
    assert result.status == "unsupported_source"
    assert "nosuchproto" in result.message


# ---------------------------------------------------------------- colour handling


def test_cmyk_jpeg_becomes_rgb_with_sane_colours(check_ready: CheckReady) -> None:
    cmyk = Image.new("CMYK", (112, 112), (0, 0, 0, 0))  # white
    cmyk.paste((0, 255, 255, 0), (56, 0, 112, 56))  # red
    cmyk.paste((255, 0, 255, 0), (0, 56, 56, 112))  # green
    cmyk.paste((0, 0, 0, 255), (56, 56, 112, 112))  # black
    result = prepare_image(encode(cmyk, "JPEG", quality=95), "c.jpg", DEFAULTS)
    image = check_ready(result, DEFAULTS)
    expected = {
        (8, 8, 48, 48): (255, 255, 255), (64, 8, 104, 48): RED,
        (8, 64, 48, 104): (0, 255, 0), (64, 64, 104, 104): (0, 0, 0),
    }
    for box, colour in expected.items():
        assert np.abs(mean_rgb(image, box) - colour).max() < 12, box


TRANSPARENT_LEFT = {
    "palette-png": lambda: encode(_palette_with_transparency(), "PNG"),
    "palette-gif": lambda: encode(_palette_with_transparency(), "GIF"),
    "rgba": lambda: encode(halves((0, 0, 0, 0), (*RED, 255), "RGBA"), "PNG"),
    "la": lambda: encode(halves((0, 0), (200, 255), "LA"), "PNG"),
    "rgb-colour-key": lambda: encode(halves((0, 0, 0), RED, "RGB"), "PNG", transparency=(0, 0, 0)),
}


def _palette_with_transparency() -> Image.Image:
    # Index 0 is black and transparent: a loader that ignores transparency shows black.
    image = halves((0,), (1,), "P")
    image.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    image.info["transparency"] = 0
    return image


@pytest.mark.parametrize("kind", sorted(TRANSPARENT_LEFT))
def test_transparency_is_composited_on_the_background(kind: str, check_ready: CheckReady) -> None:
    result = prepare_image(TRANSPARENT_LEFT[kind](), f"{kind}.png", GREEN_BACKGROUND)
    image = check_ready(result, GREEN_BACKGROUND)
    width, height = image.size
    left = mean_rgb(image, (2, 2, width // 2 - 6, height - 2))
    right = mean_rgb(image, (width // 2 + 6, 2, width - 2, height - 2))
    assert np.abs(left - GREEN_BACKGROUND.background_rgb).max() < 2
    opaque = (200, 200, 200) if kind == "la" else RED
    assert np.abs(right - opaque).max() < 2


def test_opaque_rgba_keeps_its_pixels(check_ready: CheckReady) -> None:
    rgba = noise(56, 56).convert("RGBA")
    image = check_ready(prepare_image(encode(rgba, "PNG"), "a.png", GREEN_BACKGROUND), DEFAULTS)
    assert np.array_equal(np.asarray(image), np.asarray(rgba.convert("RGB")))


def test_16_bit_grey_is_rescaled_not_clipped(check_ready: CheckReady) -> None:
    grey = Image.fromarray(np.full((56, 84), 32768, dtype=np.uint16))
    assert grey.mode == "I;16"
    image = check_ready(prepare_image(encode(grey, "PNG"), "g16.png", DEFAULTS), DEFAULTS)
    values = np.asarray(image)
    assert values.min() >= 127 and values.max() <= 129
    ramp = np.tile(np.array([0, 65535], dtype=np.uint16).repeat(42), (56, 1))
    result = prepare_image(encode(Image.fromarray(ramp), "PNG"), "r.png", DEFAULTS)
    image = check_ready(result, DEFAULTS)
    assert tuple(image.getpixel((2, 2))) == (0, 0, 0)
    assert tuple(image.getpixel((80, 2))) == (255, 255, 255)


# ---------------------------------------------------------------- frames and orientation


def _two_frames(fmt: str) -> bytes:
    first, second = Image.new("RGB", (84, 56), RED), Image.new("RGB", (84, 56), BLUE)
    options: dict[str, object] = {"save_all": True, "append_images": [second], "duration": 100}
    if fmt == "WEBP":
        options["lossless"] = True
    return encode(first, fmt, **options)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG", "MPO"])
def test_animation_uses_frame_zero(fmt: str, check_ready: CheckReady) -> None:
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    result = prepare_image(_two_frames(fmt), f"anim.{fmt.lower()}", DEFAULTS)
    image = check_ready(result, DEFAULTS)
    assert result.metrics["frames"] == 2
    assert result.metrics["image_format"] == fmt
    assert np.abs(mean_rgb(image, (0, 0, *image.size)) - RED).max() < 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int, check_ready: CheckReady) -> None:
    stored = Image.new("RGB", (168, 84), RED)
    stored.paste(BLUE, (0, 0, 56, 28))  # a corner mark, so every flip and turn differs
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    result = prepare_image(data, "rotated.jpg", DEFAULTS)
    image = check_ready(result, DEFAULTS)
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert (result.metrics["orig_width"], result.metrics["orig_height"]) == reference.size
    assert image.size == reference.size  # both sides already multiples of 28
    difference = np.abs(np.asarray(image, dtype=int) - np.asarray(reference, dtype=int))
    assert difference.mean() < 1


# ---------------------------------------------------------------- sizes


def test_tiny_image_is_upscaled_to_min_pixels(check_ready: CheckReady) -> None:
    result = prepare_image(encode(noise(10, 10), "PNG"), "tiny.png", DEFAULTS)
    image = check_ready(result, DEFAULTS)
    assert image.size == (56, 56)
    wide = check_ready(prepare_image(encode(noise(20, 10), "PNG"), "w.png", DEFAULTS), DEFAULTS)
    assert wide.width > wide.height


def test_large_jpeg_is_downscaled_within_max_pixels(
    check_ready: CheckReady, monkeypatch: pytest.MonkeyPatch
) -> None:
    y, x = np.mgrid[0:3000, 0:4000]
    squares = (y // 40 + x // 40) % 2 * 255
    pixels = np.stack([x * 255 // 3999, y * 255 // 2999, squares], axis=-1)
    data = encode(Image.fromarray(pixels.astype(np.uint8)), "JPEG", quality=90)
    decoded_sizes: list[tuple[int, int]] = []
    original_load = JpegImagePlugin.JpegImageFile.load

    def recording_load(self: JpegImagePlugin.JpegImageFile) -> object:
        decoded_sizes.append(self.size)
        return original_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", recording_load)
    result = prepare_image(data, "large.jpg", DEFAULTS)
    monkeypatch.undo()
    image = check_ready(result, DEFAULTS)
    assert (result.metrics["orig_width"], result.metrics["orig_height"]) == (4000, 3000)
    assert image.size == (728, 532)
    # Decoded at a reduced DCT scale (1/4: 1000x750), never below the size it is resized to.
    assert decoded_sizes[-1] == (1000, 750)
    # Decoding at a reduced DCT scale first must not change what the image shows.
    reference = Image.open(io.BytesIO(data)).convert("RGB").resize(image.size, Image.BICUBIC)
    assert np.abs(np.asarray(image, dtype=int) - np.asarray(reference, dtype=int)).mean() < 2


@pytest.mark.parametrize(
    "name", ["with space.jpg", "hash#1.jpg", "100%.jpg", "a%20b.jpg", "c:d.jpg", "ünï 画像.jpg"]
)
def test_awkward_file_names(tmp_path: Path, name: str, check_ready: CheckReady) -> None:
    path = tmp_path / "my photos #2" / name
    path.parent.mkdir()
    path.write_bytes(encode(noise(64, 64), "JPEG"))
    check_ready(load_image(str(path), DEFAULTS), DEFAULTS)
    check_ready(load_image(path.as_uri(), DEFAULTS), DEFAULTS)


def test_fsspec_memory_url(check_ready: CheckReady) -> None:
    url = f"memory://candid-tests/{uuid.uuid4().hex}/photo #1.png"
    fs = fsspec.filesystem("memory")
    fs.pipe(url, encode(noise(64, 64), "PNG"))
    try:
        check_ready(load_image(url, DEFAULTS), DEFAULTS)
    finally:
        fs.rm(url)


# ---------------------------------------------------------------- evidence metrics


def test_bytes_and_format_metrics(check_ready: CheckReady) -> None:
    data = encode(noise(100, 60), "PNG")
    result = prepare_image(data, "m.png", DEFAULTS)
    check_ready(result, DEFAULTS)
    m = result.metrics
    assert m["content_sha256"] == hashlib.sha256(data).hexdigest()
    assert (m["file_bytes"], m["image_format"], m["frames"]) == (len(data), "PNG", 1)
    assert (m["orig_width"], m["orig_height"]) == (100, 60)
    assert (m["input_width"], m["input_height"]) == (112, 56)
    assert m["visual_tokens"] == 112 * 56 // 784


def test_sharpness_separates_sharp_from_blurred() -> None:
    sharp = checkerboard(256)
    blurred = sharp.filter(ImageFilter.GaussianBlur(4))
    assert laplacian_variance(sharp) > 50 * laplacian_variance(blurred)
    assert laplacian_variance(Image.new("L", (300, 200), 90)) == 0.0
    via_loader = prepare_image(encode(sharp, "PNG"), "s.png", DEFAULTS).metrics["sharpness"]
    assert via_loader == pytest.approx(laplacian_variance(sharp))


def test_sharpness_matches_a_float_reference() -> None:
    pixels = np.asarray(noise(200, 120, seed=3).convert("L"), dtype=np.float64)
    lap = (
        4 * pixels[1:-1, 1:-1]
        - pixels[:-2, 1:-1] - pixels[2:, 1:-1] - pixels[1:-1, :-2] - pixels[1:-1, 2:]
    )
    assert laplacian_variance(noise(200, 120, seed=3)) == pytest.approx(lap.var(), rel=1e-9)


@pytest.mark.parametrize(
    ("image", "image_settings", "low"),
    [
        (checkerboard(48), DEFAULTS, True),  # small: longer side 48 <= 64
        (checkerboard(48), ImageSettings(low_visibility_max_side=32), False),
        (Image.new("L", (300, 300), 128), DEFAULTS, True),  # flat: sharpness 0 < 15
        (Image.new("L", (300, 300), 128), ImageSettings(low_visibility_min_sharpness=0), False),
        (checkerboard(300), DEFAULTS, False),
    ],
    ids=["small", "small-lower-threshold", "flat", "flat-no-threshold", "large-sharp"],
)
def test_low_visibility_triggers(
    image: Image.Image, image_settings: ImageSettings, low: bool, check_ready: CheckReady
) -> None:
    result = prepare_image(encode(image, "PNG"), "v.png", image_settings)
    check_ready(result, image_settings)
    assert result.metrics["low_visibility"] is low


# ---------------------------------------------------------------- properties

MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]
FORMATS = ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]
robust = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _random_image(width: int, height: int, mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode in ("I;16", "I", "F"):
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        return Image.fromarray(rng.integers(0, 65536, (height, width)).astype(dtype))
    return noise(width, height, seed).convert(mode)


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    """A random image in a random format, often cut short at a random offset."""
    image = _random_image(
        draw(st.integers(1, 320)), draw(st.integers(1, 320)),
        draw(st.sampled_from(MODES)), draw(st.integers(0, 2**32 - 1)),
    )
    fmt = draw(st.sampled_from(FORMATS))
    try:
        data = encode(image, fmt)
    except (OSError, ValueError, KeyError):
        data = encode(image.convert("RGB"), fmt)  # the format cannot store this mode
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


def _assert_well_formed(result: PreparedImage, source: str) -> None:
    assert isinstance(result.status, str) and result.status
    if result.ok:
        assert result.image is not None and result.image.mode == "RGB"
        assert result.image.size == (result.metrics["input_width"], result.metrics["input_height"])
    else:
        assert result.image is None
        assert result.message is not None and result.message.startswith(f"{source}: ")


# Pillow warns about the damaged TIFF tags it skips; expected here, and noise in the report.
@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
@robust
@given(data=damaged_images())
def test_damaged_images_never_raise(data: bytes) -> None:
    _assert_well_formed(prepare_image(data, "fuzz.img", DEFAULTS), "fuzz.img")


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF", b"BM"]),
    body=st.binary(max_size=600),
)
def test_random_bytes_never_raise(prefix: bytes, body: bytes) -> None:
    _assert_well_formed(prepare_image(prefix + body, "bytes.bin", DEFAULTS), "bytes.bin")
