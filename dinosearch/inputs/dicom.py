"""Read the first frame of a DICOM file into a PIL image, every common transfer syntax, bounded memory.

Rescale slope/intercept, VOI LUT or window, MONOCHROME1 inverted; colour stays RGB. Sizes are
checked from the header before anything is decoded, and a Deflated dataset is inflated with a bound.
"""

from __future__ import annotations

import io
import warnings
import zlib
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps

from dinosearch.inputs.errors import ImageReadError
from dinosearch.inputs.frames import check_first_frame
from dinosearch.inputs.grayscale import DicomWindowWarning, monochrome_to_u8
from dinosearch.inputs.limits import MAX_DICOM_DECODED_BYTES, size_problem

CHUNK = 1 << 20  # inflate step; the declared size is read from the first step
HEADER_SLACK = 16 << 20  # room for elements besides the pixels in a deflated dataset
PIXEL_DATA = 0x7FE00010
PIXEL_ELEMENTS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
DATASET_GROUPS = (0x0002, 0x0008)
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")


def looks_like_dataset(head: bytes) -> bool:
    """True when ``head`` starts like a DICOM dataset without preamble (old CD exports, raw dumps).

    Its first element is in group 0002 or 0008 (little or big endian) and is followed by an
    explicit VR or by an implicit length that fits in the file's first bytes.
    """
    if len(head) < 8:
        return False
    group_le, group_be = int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")
    if group_le not in DATASET_GROUPS and group_be not in DATASET_GROUPS:
        return False
    vr = head[4:6]
    return (vr.isalpha() and vr.isupper()) or int.from_bytes(head[4:8], "little") < 1 << 16


def read_dicom(fp: BinaryIO, label: str, max_pixels: int) -> Image.Image:
    """Decode frame 0 of the DICOM file ``fp`` into mode "L" or "RGB"; ImageReadError otherwise.

    A window (or VOI LUT) that leaves no contrast, or that pydicom cannot apply, is dropped for the
    modality range; the returned image then says why in ``img.info["warning"]``.
    """
    ds = _parse(fp, label, max_pixels)
    element = next((name for name in PIXEL_ELEMENTS if name in ds), None)
    if element is None:
        raise ImageReadError(
            label, "DICOM file has no pixel data (a report or structured document?)"
        )
    _check_declared(ds, label, max_pixels)
    check_first_frame(ds, label)  # the codestream's own size, which codecs trust
    arr = _decode(ds, label)
    delattr(ds, element)  # the decoded frame is all that is needed now
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric.startswith("MONOCHROME"):
        u8, warning = monochrome_to_u8(arr, ds)
        img = Image.fromarray(u8)
        if photometric == "MONOCHROME1":  # low values are bright: invert so bone is white
            img = ImageOps.invert(img)
        if warning is not None:
            warnings.warn(f"{label}: {warning}", DicomWindowWarning, stacklevel=2)
            img.info["warning"] = warning
        return img
    # pydicom >= 3 already returns YBR_FULL/YBR_FULL_422 (and JPEG 2000's YBR_ICT/YBR_RCT) as RGB.
    if photometric in COLOUR:
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
        arr = np.asarray(arr)
        if arr.dtype != np.uint8:
            scaled = arr.astype(np.float32)
            scaled *= 255.0 / max(float(arr.max()), 1.0)
            arr = scaled.astype(np.uint8)
        return Image.fromarray(arr)
    raise ImageReadError(label, f"unsupported DICOM PhotometricInterpretation {photometric!r}")


def _parse(fp: BinaryIO, label: str, max_pixels: int) -> Any:
    """The dataset in ``fp``; a Deflated one is inflated here, with a bound, not by pydicom."""
    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

    try:
        meta = None
        if read_preamble(fp, True) is not None:  # "DICM" found: the file meta group follows
            meta = _read_file_meta_info(fp)  # pydicom's own, with its fallbacks (pydicom 1-3)
        if meta is None or meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            fp.seek(0)
            return _with_syntax(pydicom.dcmread(fp, force=True))
        ds = read_dataset(_inflate(fp.read(), label, max_pixels), False, True)
    except ImageReadError:
        raise
    except Exception as e:
        raise ImageReadError(label, f"not a readable DICOM file ({e})") from e
    meta.TransferSyntaxUID = ExplicitVRLittleEndian  # what the inflated dataset now is
    ds.file_meta = meta
    ds.set_original_encoding(False, True)
    return ds


def _with_syntax(ds: Any) -> Any:
    """``ds`` with a Transfer Syntax UID: a dataset without file meta (no preamble, old CD exports)
    is uncompressed in the encoding pydicom found while parsing it."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return ds
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        return ds
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian
        if implicit
        else ExplicitVRLittleEndian
        if little
        else ExplicitVRBigEndian
    )
    return ds


def _inflate(body: bytes, label: str, max_pixels: int) -> io.BytesIO:
    """Inflate a Deflated dataset in steps, refusing it once past the size its header declares."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out, pending, limit, declared = io.BytesIO(), body, MAX_DICOM_DECODED_BYTES, "no size"
    while True:
        chunk = inflater.decompress(pending, CHUNK)
        pending = inflater.unconsumed_tail
        if out.tell() == 0:  # the header comes first: bound the rest by what it declares
            header = _header(chunk)
            if header is not None:
                _check_declared(header, label, max_pixels)
                declared = _describe(header)
                limit = min(limit, _frame_bytes(header) * _frames(header) + HEADER_SLACK)
        out.write(chunk)
        if out.tell() > limit:
            raise ImageReadError(
                label,
                f"Deflated DICOM data inflates to more than {limit:,} bytes although it declares "
                f"{declared} (limit {MAX_DICOM_DECODED_BYTES:,} bytes, "
                "DINOSEARCH_MAX_DICOM_DECODED_BYTES): a decompression bomb or a corrupt file",
            )
        if inflater.eof or not (chunk or pending):
            out.seek(0)
            return out


def _header(prefix: bytes) -> Any:
    """The elements before the pixel data in the start of an inflated dataset, or None."""
    from pydicom.filereader import read_dataset

    try:
        ds = read_dataset(
            io.BytesIO(prefix), False, True, stop_when=lambda t, v, n: t >= PIXEL_DATA
        )
        return ds if "Rows" in ds and "Columns" in ds else None
    except Exception:
        return None


def _frames(ds: Any) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _frame_bytes(ds: Any) -> int:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    return rows * cols * samples * max(int(ds.get("BitsAllocated", 8) or 8), 1) // 8


def _describe(ds: Any) -> str:
    return (
        f"{ds.get('Columns')}x{ds.get('Rows')} pixels x {ds.get('SamplesPerPixel', 1)} samples x "
        f"{ds.get('BitsAllocated')} bits x {_frames(ds)} frames"
    )


def _check_declared(ds: Any, label: str, max_pixels: int) -> None:
    """Refuse a frame whose declared size is out of limits, before any decoding."""
    try:
        width, height = int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)
        frame_bytes = _frame_bytes(ds)
    except (TypeError, ValueError) as e:
        raise ImageReadError(label, f"DICOM header has an invalid image size ({e})") from e
    problem = size_problem(width, height, max_pixels)
    if problem is not None:
        raise ImageReadError(label, problem)
    if frame_bytes > MAX_DICOM_DECODED_BYTES:
        raise ImageReadError(
            label,
            f"DICOM frame declares {_describe(ds)} = {frame_bytes:,} bytes decoded, over the "
            f"{MAX_DICOM_DECODED_BYTES:,} limit; raise DINOSEARCH_MAX_DICOM_DECODED_BYTES",
        )


def _decode(ds: Any, label: str) -> np.ndarray:
    """Frame 0 only (a multi-frame study is represented by it), by pydicom's codec plugins."""
    from pydicom.pixels import pixel_array
    from pydicom.uid import JPEGExtended12Bit

    tsyntax = ds.file_meta.get("TransferSyntaxUID", "unknown transfer syntax")
    try:
        return np.asarray(pixel_array(ds, index=0))
    except Exception as e:
        # pydicom's GDCM plugin refuses 12-bit JPEG Extended (only the GPL pylibjpeg-libjpeg
        # decodes it there), although GDCM itself reads it: such a frame goes to GDCM directly.
        arr = None
        if tsyntax == JPEGExtended12Bit and int(ds.get("BitsStored", 8)) > 8:
            arr = _gdcm_jpeg_extended_12bit(ds)
        if arr is not None:
            return arr
        raise ImageReadError(label, _decode_problem(tsyntax, e)) from e


def _decode_problem(tsyntax: Any, error: Exception) -> str:
    """Why frame 0 did not decode: no codec installed for ``tsyntax``, or corrupt data."""
    from pydicom.pixels import get_decoder

    name = getattr(tsyntax, "name", tsyntax)
    try:
        decoder = get_decoder(tsyntax)
    except Exception:  # no decoder exists for this transfer syntax at all
        return f"DICOM transfer syntax {name} is not supported ({_first_line(error)})"
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        return (
            f"no codec for DICOM {name} is installed ({missing}); install dinosearch's "
            "dependencies (python-gdcm, pylibjpeg, pylibjpeg-openjpeg)"
        )
    return f"corrupt or truncated DICOM pixel data in {name} ({_first_line(error)})"


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:3])[:300] or type(error).__name__


def _gdcm_jpeg_extended_12bit(ds: Any) -> np.ndarray | None:
    """Frame 0 of a grayscale 12-bit JPEG Extended dataset decoded by GDCM, or None."""
    try:
        import gdcm
    except ImportError:
        return None
    from pydicom.encaps import generate_frames

    if int(ds.get("SamplesPerPixel", 1)) != 1:
        return None
    rows, cols, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsStored)
    signed = int(ds.get("PixelRepresentation", 0))
    frame = next(generate_frames(ds.PixelData, number_of_frames=_frames(ds)))
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(frame)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((cols, rows, 1))
    image.SetDataElement(element)
    pi = gdcm.PhotometricInterpretation.GetPIType(str(ds.PhotometricInterpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(pi))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
    image.SetPixelFormat(gdcm.PixelFormat(1, 16, bits, bits - 1, signed))
    buffer = image.GetBuffer().encode("utf-8", "surrogateescape")  # GDCM hands back char* as str
    if len(buffer) != rows * cols * 2:
        raise ValueError(f"GDCM returned {len(buffer)} bytes for a {cols}x{rows} 16-bit frame")
    return np.frombuffer(buffer, dtype="<i2" if signed else "<u2").reshape(rows, cols)
