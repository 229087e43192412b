"""A DICOM grayscale frame → 8-bit: rescale slope/intercept, then the VOI LUT or window when it shows
something; otherwise the modality range, with a warning saying why.

A window that misses every stored value (all pixels on one side of it) turns a film all black, and a
WindowWidth of 0 or a broken optional VOI LUT makes pydicom raise; neither should lose the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dinosearch.inputs.pixels import gray_to_u8

__all__ = ["DicomWindowWarning", "monochrome_to_u8"]


class DicomWindowWarning(UserWarning):
    """A DICOM's window or VOI LUT was not used; the film is shown over its modality range."""


def monochrome_to_u8(arr: np.ndarray, ds: Any) -> tuple[np.ndarray, str | None]:
    """(H, W) uint8 of a MONOCHROME frame ``arr`` (H, W) or (H, W, 1), and why the window was
    dropped (None when it was used, or when the dataset has none)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if arr.ndim == 3:
        arr = arr[..., 0]
    shape = (int(arr.shape[0]), int(arr.shape[1]))

    def rows(y0: int, y1: int) -> np.ndarray:
        return arr[y0:y1]

    def modality(values: np.ndarray) -> np.ndarray:  # rescale slope / intercept
        return np.asarray(apply_modality_lut(values, ds), dtype=np.float64)

    def voi(values: np.ndarray) -> np.ndarray:  # then the VOI LUT or window
        return np.asarray(apply_voi_lut(apply_modality_lut(values, ds), ds), dtype=np.float64)

    if "WindowCenter" not in ds and "VOILUTSequence" not in ds:
        return gray_to_u8(rows, shape, arr.dtype, modality), None
    try:
        windowed = gray_to_u8(rows, shape, arr.dtype, voi)
    except Exception as e:  # WindowWidth 0, a malformed VOI LUT: optional attributes
        reason = f"its window / VOI LUT cannot be applied ({_one_line(e)})"
    else:
        if windowed.min() != windowed.max():
            return windowed, None
        reason = "its window / VOI LUT leaves no contrast (every stored value on one side of it)"
    plain = gray_to_u8(rows, shape, arr.dtype, modality)
    if "cannot be applied" not in reason and plain.min() == plain.max():
        return plain, None  # a truly uniform frame: the window is not to blame
    return plain, f"{reason}; shown over its modality range instead"


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return (text[:200] + "…") if len(text) > 200 else text or type(error).__name__
