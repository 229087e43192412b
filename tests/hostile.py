"""Builders of hostile input files (issue 13), small on disk and cheap to make.

Shared by the regression tests (test_hostile_inputs.py) and the memory bound (test_memory_bound.py).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from pydicom import uid as U
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info

MiB = 1 << 20


def deflate_bomb(
    path: Path, *, columns: int, rows: int, frames: int = 1, pixel_bytes: int = 1 << 30
) -> Path:
    """A Deflated Explicit VR LE DICOM whose ~1 MB file inflates to ``pixel_bytes`` of pixel data.

    It declares ``columns`` × ``rows`` 16-bit pixels × ``frames``, truthfully or not. Identical 1 MiB
    blocks of zeros, each ended by a full flush, compress to identical bytes: the file is one block
    repeated, written without ever holding the inflated data.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = U.DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = U.generate_uid()
    meta.TransferSyntaxUID = U.DeflatedExplicitVRLittleEndian
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality = "DX"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    header = DicomBytesIO()
    header.is_little_endian, header.is_implicit_VR = True, False
    write_dataset(header, ds)
    header.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixel_bytes))  # PixelData
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = deflate.compress(header.getvalue()) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(bytes(MiB)) + deflate.flush(zlib.Z_FULL_FLUSH)
    with path.open("wb") as f:
        f.write(b"\0" * 128 + b"DICM")
        out = DicomBytesIO()
        write_file_meta_info(out, meta, enforce_standard=True)
        f.write(out.getvalue())
        f.write(start + block * (pixel_bytes // MiB) + deflate.flush())
    return path


def png16(path: Path, width: int, height: int) -> Path:
    """A 16-bit grayscale PNG of a horizontal ramp, written row by row (never held in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\0" + b"".join(struct.pack(">H", x * 65535 // max(width - 1, 1)) for x in range(width))
    deflate = zlib.compressobj(9)
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)))
        data = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
        f.write(chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def png8(path: Path, width: int, height: int) -> Path:
    """A black 8-bit grayscale PNG of any shape, via Pillow (1 byte per pixel while writing)."""
    from PIL import Image

    Image.new("L", (width, height)).save(path)
    return path


def lying_codestream(path: Path, tsyntax: U.UID, size: int = 40_000) -> Path:
    """A 64 x 64 DICOM whose compressed frame claims ``size`` x ``size`` pixels (SOF/SIZ patched)."""
    import numpy as np
    from dicom_data import dataset, save
    from pydicom.encaps import encapsulate, generate_frames

    ds = dataset(np.full((64, 64), 5, np.uint16), 12)
    ds.compress(tsyntax)
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    if frame[2:4] == b"\xff\x51":  # JPEG 2000 SIZ: Xsiz, Ysiz after Lsiz and Rsiz
        frame[8:16] = struct.pack(">II", size, size)
    else:  # JPEG-LS SOF55 (FFF7): length, precision, then height and width
        at = frame.find(b"\xff\xf7") + 5
        frame[at : at + 4] = struct.pack(">HH", size, size)
    ds.PixelData = encapsulate([bytes(frame)])
    return save(ds, path)


def rle_bomb(path: Path, mib: int = 8) -> Path:
    """A 64 x 64 8-bit RLE DICOM whose one segment is ``mib`` MiB of 128-byte runs (64x that decoded)."""
    import numpy as np
    from dicom_data import dataset, save
    from pydicom.encaps import encapsulate

    ds = dataset(np.zeros((64, 64), np.uint8), 8)
    ds.file_meta.TransferSyntaxUID = U.RLELossless
    header = struct.pack("<16I", 1, 64, *[0] * 14)
    ds.PixelData = encapsulate([header + b"\x81\x00" * (mib * MiB // 2)])
    ds["PixelData"].VR = "OB"
    return save(ds, path)
