"""Pixel signals of each film: an exact hash of the decoded pixels and aligned thumbnails.

- **Exact**: SHA-256 of the decoded grey pixels, min-max scaled to 0–255 exactly as the reader scales
  16-bit films (``inputs.pixels.gray_to_u8``), so an 8-bit JPEG, a lossless PNG, a 16-bit PNG and a DICOM
  of the same film hash alike.
- **Near**: a (T, S·S) stack of zero-mean, unit-norm S×S thumbnails of the film rotated by ±3° and
  cropped by 2–5 %; the inner product of one film's variant with another's plain thumbnail is a
  normalised correlation after alignment (1 = same picture), blind to brightness, contrast, size and
  re-encoding. Chest films all look alike at low resolution: distinct films reach ~0.97, copies > 0.99.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from dinosearch.inputs.images import ImageReadError, read_image
from dinosearch.inputs.pixels import gray_to_u8

SIZE = 24  # thumbnail side: 576 values per variant
WORK = 160  # the film is first reduced to this long side; rotations and crops run there
ROTATIONS = (-3.0, 0.0, 3.0)
CROPS = (0.0, 0.02, 0.035, 0.05)  # fraction cut from each side
PLAIN = ROTATIONS.index(0.0) * len(CROPS)  # the variant index of the unedited thumbnail
VARIANTS = len(ROTATIONS) * len(CROPS)


@dataclass
class PixelSignals:
    """Per-film pixel signals of N films (row i = film i)."""

    exact: list[str | None]  # (N,) hex digest; None for an unreadable film
    variants: np.ndarray  # (N, T, S*S) float32 unit thumbnails; zeros for an unreadable film
    unreadable: dict[int, str] = field(default_factory=dict)  # row → reason
    seconds: float = 0.0

    @property
    def plain(self) -> np.ndarray:
        """(N, S*S) the unedited thumbnails."""
        return np.ascontiguousarray(self.variants[:, PLAIN])


def scaled_gray(image: Image.Image) -> np.ndarray:
    """(H, W) uint8 grey pixels min-max scaled to 0–255 (the reader's rule for 16-bit films)."""
    gray = np.asarray(image.convert("L"))
    return gray_to_u8(lambda y0, y1: gray[y0:y1], gray.shape, gray.dtype)


def exact_hash(image: Image.Image) -> str:
    """SHA-256 of the film's scaled grey pixels and shape."""
    gray = scaled_gray(image)
    digest = hashlib.sha256(np.asarray(gray.shape, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(gray).tobytes())
    return digest.hexdigest()


def _unit(image: Image.Image) -> np.ndarray:
    a = np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=np.float32).ravel()
    a = a - a.mean()
    return a / max(float(np.linalg.norm(a)), 1e-6)


def thumbnails(image: Image.Image) -> np.ndarray:
    """(T, S*S) unit thumbnails of ``image`` under every (rotation, crop) of the grid."""
    gray = image.convert("L")
    gray.thumbnail((WORK, WORK), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = np.empty((VARIANTS, SIZE * SIZE), dtype=np.float32)
    w, h = gray.size
    for r, degrees in enumerate(ROTATIONS):
        turned = (
            gray.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=0)
            if degrees
            else gray
        )
        for c, cut in enumerate(CROPS):
            dx, dy = round(w * cut), round(h * cut)
            out[r * len(CROPS) + c] = _unit(turned.crop((dx, dy, w - dx, h - dy)))
    return out


def pixel_signals(paths: Iterable[str]) -> PixelSignals:
    """Read each film once (``inputs.read_image``) → its exact hash and thumbnails."""
    start = time.perf_counter()
    exact: list[str | None] = []
    thumbs: list[np.ndarray] = []
    unreadable: dict[int, str] = {}
    blank = np.zeros((VARIANTS, SIZE * SIZE), dtype=np.float32)
    for i, path in enumerate(paths):
        try:
            image = read_image(path)
        except ImageReadError as e:
            unreadable[i] = str(e)
            exact.append(None)
            thumbs.append(blank)
            continue
        exact.append(exact_hash(image))
        thumbs.append(thumbnails(image))
    variants = np.stack(thumbs) if thumbs else np.zeros((0, VARIANTS, SIZE * SIZE), np.float32)
    return PixelSignals(exact, variants, unreadable, time.perf_counter() - start)


def aligned_score(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two films after the best grid alignment; ``a``, ``b``: (T, S*S) thumbnails."""
    return float(max((a @ b[PLAIN]).max(), (b @ a[PLAIN]).max()))
