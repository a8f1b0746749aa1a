"""The demo: synthetic thumbnails + the tiny model + ingest + describe, all local.

Nothing is downloaded: the images are drawn here and the model is built here. The model's
weights are random, so its descriptions are noise; the demo shows the plumbing (Spark, Delta,
vLLM, MLflow) working end to end, not description quality.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

# (format, file ending, Pillow save options): a thumbnail crawl has all of these.
SAMPLE_FORMATS = (
    ("JPEG", ".jpg", {"quality": 85}),
    ("PNG", ".png", {}),
    ("WEBP", ".webp", {"quality": 80}),
    ("JPEG", ".jpeg", {"quality": 60}),
    ("GIF", ".gif", {}),
    ("BMP", ".bmp", {}),
)
_PALETTE = [
    (200, 40, 40), (40, 160, 60), (40, 80, 200), (230, 200, 40), (240, 240, 240),
    (30, 30, 30), (140, 90, 40), (150, 60, 170), (250, 140, 30), (120, 120, 120),
]


@dataclass(frozen=True)
class SampleSet:
    folder: Path
    paths: list[Path]


def draw_scene(rng: random.Random, width: int, height: int) -> Image.Image:
    """A plain background with one to three filled shapes, sometimes blurred."""
    background = rng.choice(_PALETTE)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(1, 3)):
        colour = rng.choice([c for c in _PALETTE if c != background])
        x0, y0 = rng.randint(0, width // 2), rng.randint(0, height // 2)
        x1, y1 = rng.randint(x0 + width // 8, width), rng.randint(y0 + height // 8, height)
        shape = rng.choice(("rectangle", "ellipse", "triangle"))
        if shape == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
    if rng.random() < 0.25:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(1.0, 3.0)))
    return image


def make_sample_images(folder: str | Path, count: int = 24, seed: int = 0) -> SampleSet:
    """Write ``count`` synthetic thumbnails (64-256 px, mixed formats) into ``folder``.
    Deterministic for a seed; existing files with the same names are overwritten."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for index in range(count):
        width, height = rng.randint(64, 256), rng.randint(64, 256)
        image = draw_scene(rng, width, height)
        fmt, ending, options = SAMPLE_FORMATS[index % len(SAMPLE_FORMATS)]
        path = folder / f"scene_{index:03d}{ending}"
        image.save(path, format=fmt, **options)
        paths.append(path)
    return SampleSet(folder=folder, paths=paths)
