"""Planted copies: the edits a re-shared film goes through (re-encoding, resizing, cropping,
brightness, a small rotation), applied in memory to calibrate the near-duplicate thresholds."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance

Edit = Callable[[Image.Image], Image.Image]


def jpeg(image: Image.Image, quality: int = 35) -> Image.Image:
    """Re-encoded as JPEG at ``quality``."""
    buf = io.BytesIO()
    image.convert("L").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


def resize(image: Image.Image, factor: float = 0.6) -> Image.Image:
    w, h = image.size
    return image.resize(
        (max(8, round(w * factor)), max(8, round(h * factor))), Image.Resampling.BICUBIC
    )


def crop(image: Image.Image, fraction: float = 0.03) -> Image.Image:
    """``fraction`` of the width and height cut from each side."""
    w, h = image.size
    dx, dy = round(w * fraction), round(h * fraction)
    return image.crop((dx, dy, w - dx, h - dy))


def brighten(image: Image.Image, factor: float = 1.1) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def rotate(image: Image.Image, degrees: float = 3.0) -> Image.Image:
    return image.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=0)


def edits(rng: np.random.Generator) -> dict[str, Edit]:
    """The seven planted edits, their strengths drawn from ``rng`` within the audit's stated range."""
    q = int(rng.integers(25, 50))
    f = float(rng.uniform(0.4, 0.8))
    c = float(rng.uniform(0.02, 0.05))
    r = float(rng.choice([-3.0, 3.0]))
    return {
        f"jpeg q{q}": lambda im: jpeg(im, q),
        f"resize x{f:.2f}": lambda im: resize(im, f),
        f"crop {c:.1%}": lambda im: crop(im, c),
        "brighten +10%": lambda im: brighten(im, 1.1),
        "darken -10%": lambda im: brighten(im, 0.9),
        f"rotate {r:+.0f}°": lambda im: rotate(im, r),
        "combined resize+crop+brightness+jpeg": lambda im: jpeg(
            brighten(crop(resize(im, f), c), 1.05), q
        ),
    }
