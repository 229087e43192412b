"""High-bit-depth grayscale → 8-bit, min-max scaled, in strips of rows so memory stays bounded.

A 9,400 × 9,400 16-bit film is 177 MB; one float64 copy of it is 707 MB. Here no whole-image
temporary is made beyond the uint8 result: ≤16-bit integers go through a 65,536-entry lookup table
(exactly the per-pixel float64 arithmetic, done once per code), anything else strip by strip.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

Rows = Callable[[int, int], np.ndarray]  # (first row, end row) → that strip, shape (r, W)
Transform = Callable[[np.ndarray], np.ndarray]  # elementwise, e.g. DICOM modality + VOI LUT
STRIP_PIXELS = 1 << 20  # a float64 strip is 8 MB


def gray_to_u8(
    rows: Rows,
    shape: tuple[int, int],
    dtype: np.dtype,
    transform: Transform | None = None,
) -> np.ndarray:
    """Min-max scale a grayscale image read through ``rows`` to uint8 (a flat image becomes black).

    Args:
        rows: returns rows ``[y0, y1)`` of the image as an array of ``dtype``.
        shape: (H, W).
        dtype: the dtype ``rows`` returns.
        transform: elementwise map applied before scaling (values → float64).

    Returns:
        (H, W) uint8; NaN becomes 0, values are rounded half to even as ``np.round``.
    """
    height, width = shape
    step = max(1, STRIP_PIXELS // max(width, 1))
    spans = [(y, min(y + step, height)) for y in range(0, height, step)]
    native = np.dtype(dtype).newbyteorder("=")
    out = np.empty(shape, dtype=np.uint8)
    if native.kind in "ui" and native.itemsize <= 2:
        codes = np.dtype(f"u{native.itemsize}")
        lut = _lut(native, codes, transform)
        present = np.zeros(lut.size, dtype=bool)
        for y0, y1 in spans:
            present |= (
                np.bincount(_codes(rows(y0, y1), native, codes).ravel(), minlength=lut.size) > 0
            )
        lut8 = _scale(lut, *_finite_range(lut[present]))
        for y0, y1 in spans:
            out[y0:y1] = lut8[_codes(rows(y0, y1), native, codes)]
        return out
    strip = (lambda a: transform(a)) if transform else (lambda a: a.astype(np.float64))
    ranges = [_finite_range(strip(np.asarray(rows(y0, y1), dtype=native))) for y0, y1 in spans]
    lo = min((r[0] for r in ranges), default=0.0)
    hi = max((r[1] for r in ranges), default=0.0)
    for y0, y1 in spans:
        out[y0:y1] = _scale(strip(np.asarray(rows(y0, y1), dtype=native)), lo, hi)
    return out


def _lut(native: np.dtype, codes: np.dtype, transform: Transform | None) -> np.ndarray:
    """Every value a ``native`` pixel can take, in code order, mapped to float64."""
    values = np.arange(1 << (8 * native.itemsize), dtype=np.int64).astype(codes).view(native)
    return np.asarray(transform(values) if transform else values, dtype=np.float64)


def _codes(strip: np.ndarray, native: np.dtype, codes: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(strip, dtype=native).view(codes)


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (np.inf, -np.inf)  # the neutral element of (min, max)
    return float(finite.min()), float(finite.max())


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if not hi > lo:
        return np.zeros(values.shape, dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in float images
        scaled = (values - lo) / (hi - lo) * 255.0
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).round().astype(np.uint8)
