"""What decoding a PNG/JPEG/TIFF will hold in memory, known from its header; a JPEG over the budget is
decoded at a reduced size (libjpeg scales in the DCT), anything else over it is refused.

Pixels alone are not bytes: a 4 KB RGBA file of 9,990² pixels decodes to 400 MB (Pillow stores RGB,
RGBA, LA, CMYK and 32-bit modes at 4 bytes a pixel), and converting it to RGB adds 400 MB more.
"""

from __future__ import annotations

from PIL import Image

from dinosearch.inputs.errors import ImageReadError
from dinosearch.inputs.limits import MAX_DECODED_BYTES

# EXIF orientation → the transpose that shows the image upright (as ImageOps.exif_transpose).
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
JPEG_SCALES = (1, 2, 4, 8)


def pixel_bytes(mode: str) -> int:
    """Bytes per pixel of ``mode`` in Pillow's memory (bands × bits, padded to 4 bytes past 2)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def peak_bytes(mode: str, pixels: int, rotated: bool, coefficients: int = 0) -> int:
    """Bytes held at once while decoding ``pixels`` of ``mode`` into 8-bit "L" or "RGB".

    The decoded image, the converted result when ``mode`` is not already L or RGB (grayscale modes
    become L, 1 byte; the others RGB, 4), a rotated copy of the result when ``rotated`` (EXIF), and
    ``coefficients`` (a progressive JPEG's whole-image DCT buffers, which no scaling reduces).
    """
    decoded = pixel_bytes(mode) * pixels
    gray = mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16")
    result = pixels * (1 if gray else 4)
    converted = 0 if mode in ("L", "RGB") else result
    return decoded + converted + (result if rotated else 0) + coefficients


def fit_decoded_bytes(img: Image.Image, label: str, rotated: bool) -> None:
    """Make the opened, not yet loaded ``img`` decode within MAX_DECODED_BYTES, or refuse it.

    A JPEG is reduced by 2, 4 or 8 (``draft``) until it fits; other formats cannot be decoded in
    part, so they are refused with the figures and the fix.
    """
    pixels = img.width * img.height
    coefficients = 0
    if img.format in ("JPEG", "MPO") and img.info.get("progressive"):
        coefficients = 2 * len(img.getbands()) * pixels  # 64 int16 per 8×8 block and component
    needed = peak_bytes(img.mode, pixels, rotated, coefficients)
    if needed <= MAX_DECODED_BYTES:
        return
    if img.format in ("JPEG", "MPO"):
        for scale in JPEG_SCALES[1:]:
            size = (max(1, img.width // scale), max(1, img.height // scale))
            reduced = -(-img.width // scale) * -(-img.height // scale)
            if peak_bytes(img.mode, reduced, rotated, coefficients) <= MAX_DECODED_BYTES:
                if img.draft(img.mode, size) is not None:  # None: not a single-tile JPEG
                    return
                break
    raise ImageReadError(
        label,
        f"a {img.width}x{img.height} {img.format} image in mode {img.mode} needs about "
        f"{needed / 2**20:,.0f} MiB to decode, over the {MAX_DECODED_BYTES / 2**20:,.0f} MiB "
        "limit; save it as 8-bit grayscale or RGB without transparency, or raise "
        "DINOSEARCH_MAX_DECODED_BYTES",
    )
