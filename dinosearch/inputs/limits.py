"""Input limits: the one place that bounds what reading one image may cost (memory, time, file types).

Each limit is a module constant read once at import from an environment variable (``core.env``), so
a deployment can change it without code (``DINOSEARCH_MAX_IMAGE_PIXELS=200000000 dinosearch embed``).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from dinosearch.core.env import env_int

MAX_IMAGE_PIXELS = env_int("DINOSEARCH_MAX_IMAGE_PIXELS")
"""Width × height of the stored image (declared, before decoding); 100 Mpx is far past any film."""

MAX_ASPECT_RATIO = env_int("DINOSEARCH_MAX_ASPECT_RATIO")
"""Long side / short side. Backbones resize the short side to S, so the long side after resizing
stays ≤ S × this (518 × 20 = 10,360 px at the largest input); a stitched full-spine film is ~1:5."""

MAX_FILE_BYTES = env_int("DINOSEARCH_MAX_FILE_BYTES")
"""Size of one image file or upload (an uncompressed 100 Mpx 16-bit DICOM is 200 MB); only regular
files are read at all."""

MAX_DICOM_DECODED_BYTES = env_int("DINOSEARCH_MAX_DICOM_DECODED_BYTES")
"""Declared Rows × Columns × SamplesPerPixel × BitsAllocated / 8 of the frame decoded, and the most
a Deflated-transfer-syntax dataset may inflate to (bounded inflate: a zip bomb stops there)."""

MAX_DECODED_BYTES = env_int("DINOSEARCH_MAX_DECODED_BYTES")
"""What decoding one PNG/JPEG/TIFF may hold at once, estimated from its header before decoding: the
decoded image as Pillow stores it (1 byte a pixel for L/P, 2 for 16-bit, 4 for RGB/RGBA/LA/CMYK/32-bit),
plus the 8-bit L/RGB result when it must be converted, plus a rotated copy for an EXIF orientation.
A JPEG over it is decoded at 1/2, 1/4 or 1/8 size; anything else is refused."""

MAX_MANIFEST_BYTES = env_int("DINOSEARCH_MAX_MANIFEST_BYTES")
"""Size of a CSV/Parquet image manifest (10 million rows of paths and labels fit well within it)."""


def size_problem(width: int, height: int, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """Why an image of ``width`` × ``height`` pixels is refused, or None when it is within limits."""
    if width <= 0 or height <= 0:
        return f"image has no pixels ({width}x{height})"
    if width * height > max_pixels:
        return (
            f"image has {width}x{height} pixels, over the {max_pixels:,} limit; downscale it or "
            "raise DINOSEARCH_MAX_IMAGE_PIXELS"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return (
            f"image is {width}x{height} pixels, an aspect ratio over the 1:{MAX_ASPECT_RATIO} limit "
            "(resizing its short side would explode the long one); crop it or raise "
            "DINOSEARCH_MAX_ASPECT_RATIO"
        )
    return None


def open_regular_file(
    path: str, max_bytes: int = MAX_FILE_BYTES, setting: str = "DINOSEARCH_MAX_FILE_BYTES"
) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file of at most ``max_bytes``; OSError otherwise
    (``setting`` names the environment variable that raises the limit).

    Checked before opening (a FIFO, device, socket or folder is never opened) and again on the open
    descriptor (O_NONBLOCK: if the path was swapped for a FIFO in between, opening cannot block).
    """
    _check_regular(os.stat(path), max_bytes, setting)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        _check_regular(os.fstat(fd), max_bytes, setting)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(st: os.stat_result, max_bytes: int, setting: str) -> None:
    problem = not_regular(st)
    if problem is not None:
        raise (IsADirectoryError if stat.S_ISDIR(st.st_mode) else OSError)(problem)
    if st.st_size > max_bytes:
        raise OSError(
            f"file is {st.st_size:,} bytes, over the {max_bytes:,} limit; raise {setting} to read it"
        )


def not_regular(st: os.stat_result) -> str | None:
    """Why a file with this ``os.stat`` result is never read as an image, or None if it is regular."""
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not an image file"
    return f"is a {_file_kind(st.st_mode)}, not a regular file; only image files are read"


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "special file")
