"""Checks on a DICOM file's compressed first frame, before any codec sees it.

Codecs size their output from the codestream, not from the DICOM header: a 700-byte JPEG-LS frame
that claims 40,000 x 40,000 pixels inside a 64 x 64 DICOM made CharLS abort the whole process, and
an 8 MB RLE frame inflates to 512 MB (runs of 128). So the codestream's own size must match the
header's, and RLE segments may decode to no more than twice their declared size.
"""

from __future__ import annotations

import struct
from typing import Any

from dinosearch.inputs.errors import ImageReadError

RLE_SLACK = 2  # RLE segments may decode to this many times their size (padding is tolerated)


def check_first_frame(ds: Any, label: str) -> None:
    """Refuse an encapsulated frame 0 whose codestream disagrees with the DICOM header's size."""
    from pydicom.encaps import generate_frames
    from pydicom.uid import RLELossless

    tsyntax = ds.file_meta.get("TransferSyntaxUID")
    if tsyntax is None or not tsyntax.is_encapsulated:
        return
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=frames))
    except Exception as e:
        raise ImageReadError(label, f"DICOM pixel data has no readable first frame ({e})") from e
    rows, cols = int(ds.Rows), int(ds.Columns)
    if tsyntax == RLELossless:
        _check_rle(frame, rows * cols, label)
        return
    size = _codestream_size(frame)
    if size is not None and (size[0] != cols or size[1] not in (rows, 0)):  # 0: height in DNL
        raise ImageReadError(
            label,
            f"the {tsyntax.name} frame is {size[0]}x{size[1]} pixels but the DICOM header "
            f"declares {cols}x{rows}: a corrupt or hostile file",
        )


def _codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG/JPEG-LS SOF or a JPEG 2000/HTJ2K SIZ marker, or None."""
    from pydicom.pixels.utils import _get_jpg_parameters  # pydicom's own JPEG/JPEG-LS parser

    siz = frame.find(b"\xff\x4f\xff\x51", 0, 512)  # SOC then SIZ; JP2 boxes may come first
    if siz >= 0 and len(frame) >= siz + 24:
        x, y, x0, y0 = struct.unpack_from(">IIII", frame, siz + 8)
        return x - x0, y - y0
    params = _get_jpg_parameters(frame[:65536]) if frame[:2] == b"\xff\xd8" else {}
    if "width" in params and "height" in params:
        return int(params["width"]), int(params["height"])
    return None


def _check_rle(frame: bytes, pixels: int, label: str) -> None:
    """Each RLE segment (one byte plane) must not decode past RLE_SLACK x ``pixels`` bytes."""
    if len(frame) < 64:
        raise ImageReadError(label, "RLE frame is shorter than its 64-byte header")
    count, *offsets = struct.unpack_from("<16I", frame)
    ends = [*offsets[1 : min(count, 15)], len(frame)]
    for start, end in zip(offsets[: min(count, 15)], ends, strict=False):
        decoded = _rle_decoded_length(frame[start:end], RLE_SLACK * pixels + 1)
        if decoded > RLE_SLACK * pixels:
            raise ImageReadError(
                label,
                f"an RLE segment decodes to more than {RLE_SLACK * pixels:,} bytes for "
                f"{pixels:,} pixels: a decompression bomb or a corrupt file",
            )


def _rle_decoded_length(segment: bytes, cap: int) -> int:
    """How many bytes a PackBits segment decodes to, counting no further than ``cap``."""
    pos, out, end = 0, 0, len(segment)
    while pos < end and out < cap:
        header = segment[pos]
        if header < 128:  # literal run of header + 1 bytes
            out += header + 1
            pos += header + 2
        elif header > 128:  # one byte repeated 257 - header times
            out += 257 - header
            pos += 2
        else:
            pos += 1
    return out
