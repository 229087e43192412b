"""Read one medical or everyday image file into a PIL image ("L" or "RGB"), or fail with ImageReadError.

Handles PNG/JPEG (8- and 16-bit), TIFF, BMP/WebP and DICOM (rescale slope/intercept, VOI LUT or window,
MONOCHROME1 inverted), palette/RGBA/CMYK, EXIF orientation, and refuses decompression bombs.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# A 100-megapixel film is already far beyond any radiograph; larger files are refused, not decoded.
MAX_PIXELS = 100_000_000
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
IMAGE_SUFFIXES = {
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".webp",
    ".gif",
} | DICOM_SUFFIXES


class ImageReadError(ValueError):
    """An image could not be read; names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def read_image(
    source: str | Path | bytes, *, name: str | None = None, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Decode ``source`` (a path or the file's bytes) into mode "L" (grayscale) or "RGB".

    Args:
        source: file path, or raw bytes of an upload.
        name: how to name the file in errors when ``source`` is bytes.
        max_pixels: refuse images with more pixels than this (decompression-bomb guard).

    Raises:
        ImageReadError: for any unreadable, empty, truncated, oversized or unsupported file.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<upload>")
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as e:
        raise ImageReadError(label, f"cannot open file ({e.strerror or e})") from e
    if not data:
        raise ImageReadError(label, "file is empty")
    try:
        if _is_dicom(data, label):
            return _read_dicom(data, label, max_pixels)
        return _read_pil(data, label, max_pixels)
    except ImageReadError:
        raise
    except Exception as e:  # decoders raise many types; the caller needs one
        raise ImageReadError(label, f"{type(e).__name__}: {e}") from e


def _is_dicom(data: bytes, label: str) -> bool:
    return data[128:132] == b"DICM" or Path(label).suffix.lower() in DICOM_SUFFIXES


def _read_pil(data: bytes, label: str, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as e:
            raise ImageReadError(label, "not an image file Pillow or pydicom can read") from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageReadError(label, f"image too large (decompression-bomb guard): {e}") from e
    _check_size(img.width, img.height, label, max_pixels)
    try:
        img.load()
    except OSError as e:  # truncated or corrupt stream
        raise ImageReadError(label, f"corrupt or truncated image data ({e})") from e
    upright: Image.Image = ImageOps.exif_transpose(img) or img
    return _to_l_or_rgb(upright)


def _check_size(width: int, height: int, label: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageReadError(
            label,
            f"image has {width}x{height} pixels, over the {max_pixels:,} limit; "
            "downscale it or raise max_pixels",
        )
    if width == 0 or height == 0:
        raise ImageReadError(label, f"image has no pixels ({width}x{height})")


def _to_l_or_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _scale_to_l(np.asarray(img, dtype=np.float64))
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent regions become black, as a film's unexposed background.
        base = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(base, img.convert("RGBA")).convert("RGB")
        return _collapse_gray(img) if mode.startswith("L") else img
    if mode == "RGB" or mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    return img.convert("RGB")


def _collapse_gray(img: Image.Image) -> Image.Image:
    return img.convert("L")


def _scale_to_l(arr: np.ndarray) -> Image.Image:
    """Min-max scale any numeric 2-D array to 8-bit grayscale (flat images become black)."""
    if arr.ndim == 3:
        arr = arr[..., 0]
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
    return Image.fromarray(np.nan_to_num(scaled).round().astype(np.uint8))


def _read_dicom(data: bytes, label: str, max_pixels: int) -> Image.Image:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as e:
        raise ImageReadError(label, f"not a readable DICOM file ({e})") from e
    if "PixelData" not in ds:
        raise ImageReadError(
            label, "DICOM file has no pixel data (a report or structured document?)"
        )
    _check_size(int(ds.get("Columns", 0)), int(ds.get("Rows", 0)), label, max_pixels)
    try:
        arr = ds.pixel_array
    except Exception as e:
        raise ImageReadError(
            label,
            f"cannot decode DICOM pixel data ({e}); compressed transfer syntaxes need "
            "pylibjpeg or gdcm installed",
        ) from e
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]  # multi-frame: the first frame stands for the study
    if photometric.startswith("MONOCHROME"):
        arr = apply_modality_lut(arr, ds)  # rescale slope / intercept
        arr = apply_voi_lut(arr, ds)  # VOI LUT, or window centre / width
        img = _scale_to_l(np.asarray(arr, dtype=np.float64))
        if photometric == "MONOCHROME1":  # low values are bright: invert so bone is white
            img = ImageOps.invert(img)
        return img
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR"):
        from pydicom.pixels import apply_color_lut, convert_color_space

        if photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
        elif photometric.startswith("YBR"):
            arr = convert_color_space(arr, photometric, "RGB")
        arr = np.asarray(arr)
        if arr.dtype != np.uint8:
            arr = (arr / max(float(arr.max()), 1.0) * 255).astype(np.uint8)
        return Image.fromarray(arr)
    raise ImageReadError(label, f"unsupported DICOM PhotometricInterpretation {photometric!r}")
