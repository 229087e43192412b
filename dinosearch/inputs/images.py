"""Read one medical or everyday image file into a PIL image ("L" or "RGB"), or fail with ImageReadError.

Handles PNG/JPEG (8- and 16-bit), TIFF and DICOM (``dicom``; by suffix or content, with or without
the 128-byte preamble), palette/RGBA/CMYK, EXIF orientation. No other format is decoded whatever the
file's name (Pillow's other decoders, EPS → Ghostscript among them, are never reached). Reads regular
files only and refuses, before decoding, whatever ``limits`` bounds, decoded bytes included.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from dinosearch.inputs.decoded import ORIENTATIONS, fit_decoded_bytes
from dinosearch.inputs.dicom import looks_like_dataset, read_dicom
from dinosearch.inputs.dicomweb import fetch_bytes, is_dicomweb
from dinosearch.inputs.errors import ImageReadError, display_path
from dinosearch.inputs.limits import (
    MAX_FILE_BYTES,
    MAX_IMAGE_PIXELS,
    open_regular_file,
    size_problem,
)
from dinosearch.inputs.pixels import STRIP_PIXELS, gray_to_u8

MAX_PIXELS = MAX_IMAGE_PIXELS  # the name features/loader.py imports
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"} | DICOM_SUFFIXES
FORMATS = ("PNG", "JPEG", "TIFF")  # Pillow's names; what docs/reliability.md promises, nothing else
HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")

__all__ = ["DICOM_SUFFIXES", "IMAGE_SUFFIXES", "MAX_PIXELS", "ImageReadError", "read_image"]


def read_image(
    source: str | Path | bytes, *, name: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS
) -> Image.Image:
    """Decode ``source`` (a path or the file's bytes) into mode "L" (grayscale) or "RGB".

    Args:
        source: file path, raw bytes of an upload, or a ``dicomweb+http…/instances/UID`` path
            (fetched with WADO-RS; an unreachable archive raises ``ArchiveError``).
        name: how to name the file in errors when ``source`` is bytes.
        max_pixels: refuse images with more pixels than this (decompression-bomb guard).

    Raises:
        ImageReadError: for any unreadable, empty, truncated, oversized or unsupported file, and for
            anything but a regular file (folder, FIFO, device, socket).
    """
    label = name or (display_path(source) if not isinstance(source, bytes) else "<upload>")
    if isinstance(source, str) and is_dicomweb(source):
        source = fetch_bytes(source)
    with _open(source, label) as fp:
        try:
            head = fp.read(132)
            if not head:
                raise ImageReadError(label, "file is empty")
            fp.seek(0)
            if (
                head[128:132] == b"DICM"
                or Path(label).suffix.lower() in DICOM_SUFFIXES
                or looks_like_dataset(head)
            ):
                return read_dicom(fp, label, max_pixels)
            return _read_pil(fp, label, max_pixels)
        except ImageReadError:
            raise
        except Exception as e:  # decoders raise many types; the caller needs one
            raise ImageReadError(label, f"{type(e).__name__}: {e}") from e


def _open(source: str | Path | bytes, label: str) -> BinaryIO:
    if isinstance(source, bytes):
        if len(source) > MAX_FILE_BYTES:
            raise ImageReadError(
                label,
                f"upload is {len(source):,} bytes, over the {MAX_FILE_BYTES:,} limit "
                "(DINOSEARCH_MAX_FILE_BYTES)",
            )
        return io.BytesIO(source)
    try:
        return open_regular_file(os.fspath(source))
    except (OSError, ValueError) as e:  # ValueError: a NUL character in the path
        raise ImageReadError(
            label, f"cannot open file ({getattr(e, 'strerror', None) or e})"
        ) from e


def _read_pil(fp: BinaryIO, label: str, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        # Our own limit (size_problem) decides; Pillow still raises past 2x Image.MAX_IMAGE_PIXELS.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:  # only the documented formats: no other decoder (EPS → Ghostscript…) is reachable
            img = Image.open(fp, formats=FORMATS)
        except UnidentifiedImageError as e:
            raise ImageReadError(
                label, "not an image file dinosearch reads (PNG, JPEG, TIFF or DICOM)"
            ) from e
        except Image.DecompressionBombError as e:
            raise ImageReadError(label, f"image too large (decompression-bomb guard): {e}") from e
    problem = size_problem(img.width, img.height, max_pixels)
    if problem is not None:
        raise ImageReadError(label, problem)
    orientation = _orientation(img)  # known before decoding, but for a PNG's late eXIf chunk
    fit_decoded_bytes(img, label, orientation in ORIENTATIONS)
    try:
        img.load()
    except OSError as e:  # truncated or corrupt stream
        raise ImageReadError(label, f"corrupt or truncated image data ({e})") from e
    late = img.getexif().get(ExifTags.Base.Orientation, 1) if img.format == "PNG" else None
    if late in ORIENTATIONS and orientation not in ORIENTATIONS:
        orientation = late
        fit_decoded_bytes(img, label, True)  # the rotated copy must fit too
    out = _to_l_or_rgb(img)
    return out.transpose(ORIENTATIONS[orientation]) if orientation in ORIENTATIONS else out


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation, read without decoding (Pillow's PNG ``getexif`` would load pixels)."""
    if img.format == "PNG":
        raw = img.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(ExifTags.Base.Orientation, 1))
    return int(img.getexif().get(ExifTags.Base.Orientation, 1))


def _to_l_or_rgb(img: Image.Image) -> Image.Image:
    """Mode "L" or "RGB"; conversions run strip by strip, so only the result is a new whole image."""
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in HIGH_BIT_MODES:
        return _high_bit_to_l(img)
    width, height = img.size
    step = max(1, STRIP_PIXELS // max(width, 1))
    out: Image.Image | None = None
    for y in range(0, height, step):
        strip = _strip_to_l_or_rgb(img.crop((0, y, width, min(y + step, height))))
        if out is None:
            out = Image.new(strip.mode, img.size)
        out.paste(strip, (0, y))
    assert out is not None  # size_problem refused images without pixels
    return out


def _strip_to_l_or_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "1":
        return img.convert("L")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent regions become black, as a film's unexposed background.
        base = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(base, img.convert("RGBA")).convert("RGB")
        return img.convert("L") if mode.startswith("L") else img
    return img.convert("RGB")


def _high_bit_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit or float grayscale → 8-bit, min-max scaled, strip by strip (no float64 copy)."""
    width, height = img.size

    def rows(y0: int, y1: int) -> np.ndarray:
        return np.asarray(img.crop((0, y0, width, y1)))

    dtype = rows(0, 1).dtype
    return Image.fromarray(gray_to_u8(rows, (height, width), dtype))
