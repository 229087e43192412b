"""Builders of issue 21's memory cases: images within every pixel limit whose decoded bytes are not.

Each writes a file of a few KB to a few MB without ever holding the decoded image: constant rows are
deflated once after a full flush (identical input then gives identical bytes), and the JPEG is a
hand-made baseline stream whose every block is "DC 0, end of block" under 1-bit Huffman codes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

ROWS_PER_BLOCK = 64


def _zlib_of_rows(row: bytes, height: int) -> bytes:
    """A zlib stream of ``row`` repeated ``height`` times, made from one compressed block of rows."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflate.compress(row * ROWS_PER_BLOCK) + deflate.flush(zlib.Z_FULL_FLUSH)
    full, rest = divmod(height, ROWS_PER_BLOCK)
    tail = deflate.compress(row * rest) + deflate.flush()
    adler = 1
    for _ in range(full):  # adler32 of the whole, block by block (cheap: no compression here)
        adler = zlib.adler32(row * ROWS_PER_BLOCK, adler)
    adler = zlib.adler32(row * rest, adler)
    return b"\x78\xda" + block * full + tail + struct.pack(">I", adler)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(path: Path, size: int, color_type: int, *, palette_alpha: bool = False) -> Path:
    """An 8-bit ``size`` × ``size`` PNG of one colour: colour type 3 (palette; with a tRNS chunk
    when ``palette_alpha``), 4 (LA) or 6 (RGBA)."""
    channels = {3: 1, 4: 2, 6: 4}[color_type]
    row = b"\0" + bytes([1, 128, 1, 200][:channels]) * size  # filter byte, then the pixels
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, color_type, 0, 0, 0))]
    if color_type == 3:
        chunks.append(_chunk(b"PLTE", bytes([0, 0, 0, 90, 140, 200])))
        if palette_alpha:
            chunks.append(_chunk(b"tRNS", bytes([0, 128])))
    chunks += [_chunk(b"IDAT", _zlib_of_rows(row, size)), _chunk(b"IEND", b"")]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(chunks))
    return path


def cmyk_tiff(path: Path, size: int) -> Path:
    """A ``size`` × ``size`` 8-bit CMYK TIFF, one Deflate-compressed strip of a constant colour."""
    data = _zlib_of_rows(bytes([10, 20, 30, 40]) * size, size)
    entries = [  # (tag, type, count, value); type 3 SHORT, 4 LONG
        (256, 4, 1, size),
        (257, 4, 1, size),
        (258, 3, 4, 0),  # BitsPerSample 8,8,8,8: an offset, patched below
        (259, 3, 1, 8),  # Deflate
        (262, 3, 1, 5),  # separated (CMYK)
        (273, 4, 1, 0),  # StripOffsets: patched below
        (277, 3, 1, 4),
        (278, 4, 1, size),
        (279, 4, 1, len(data)),
        (284, 3, 1, 1),
    ]
    ifd_at = 8
    bits_at = ifd_at + 2 + 12 * len(entries) + 4
    data_at = bits_at + 8
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = {258: bits_at, 273: data_at}.get(tag, value)
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 and count == 1 else None
        ifd += struct.pack("<HHI", tag, kind, count) + (packed or struct.pack("<I", value))
    head = b"II*\0" + struct.pack("<I", ifd_at)
    path.write_bytes(head + ifd + b"\0\0\0\0" + struct.pack("<4H", 8, 8, 8, 8) + data)
    return path


def cmyk_jpeg(path: Path, size: int) -> Path:
    """A baseline ``size`` × ``size`` 4-component (CMYK) JPEG, every 8×8 block flat.

    Both Huffman tables hold one 1-bit code (DC difference 0; AC end of block), so each block is
    the bits "00" and the scan is all zero bytes: ~2 bits a block, written without any encoder.
    """
    ones = bytes([1] + [0] * 15)
    sof = struct.pack(">BHHB", 8, size, size, 4) + b"".join(
        bytes([c, 0x11, 0]) for c in (1, 2, 3, 4)
    )
    sos = bytes([4]) + b"".join(bytes([c, 0x00]) for c in (1, 2, 3, 4)) + bytes([0, 63, 0])
    blocks = (-(-size // 8)) ** 2 * 4

    def segment(marker: int, body: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body

    header = (
        b"\xff\xd8"
        + segment(0xDB, bytes([0]) + bytes([1] * 64))  # DQT: table 0, all ones
        + segment(0xC0, sof)
        + segment(0xC4, bytes([0x00]) + ones + bytes([0]))  # DC table 0: symbol 0 → "0"
        + segment(0xC4, bytes([0x10]) + ones + bytes([0]))  # AC table 0: EOB → "0"
        + segment(0xDA, sos)
    )
    path.write_bytes(header + bytes(-(-blocks * 2 // 8)) + b"\xff\xd9")
    return path
