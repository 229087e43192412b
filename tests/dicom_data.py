"""Synthetic DICOM test data: chest-film-like pixels, uncompressed datasets, and their encoders.

Encoders turn an uncompressed dataset into one in another transfer syntax with what the project
installs anyway: pydicom's own (RLE built in, JPEG-LS via pyjpegls, JPEG 2000 via
pylibjpeg-openjpeg) and GDCM (JPEG Baseline and Lossless). Codestreams none of these can write
(12-bit JPEG Extended, JPEG Lossless with predictor 6, HTJ2K) are committed in fixtures/dicom/,
made from ``phantom()`` by fixtures/dicom/make_codestreams.py. Nothing is downloaded.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import uid as U
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate

ROWS, COLS = 300, 260  # PIL size is (COLS, ROWS)
CODESTREAMS = Path(__file__).parent / "fixtures" / "dicom"

Encode = Callable[[Dataset, np.ndarray], None]


def radiograph(bits_stored: int = 12) -> np.ndarray:
    """A chest-film-like uint16 image using the full ``bits_stored`` range.

    Denser towards the diaphragm, two darker lung fields crossed by ribs, a bright spine, a nodule,
    mild quantum noise, a saturated lead marker and a black collimator edge.
    """
    rng = np.random.default_rng(20240601)
    yy, xx = np.mgrid[0:ROWS, 0:COLS].astype(np.float64)
    y, x = yy / (ROWS - 1), xx / (COLS - 1)
    img = 0.30 + 0.35 * y
    lungs = np.zeros_like(img)
    for cx in (0.30, 0.70):
        lungs = np.maximum(
            lungs, np.clip(1.0 - ((x - cx) / 0.17) ** 2 - ((y - 0.45) / 0.32) ** 2, 0, 1)
        )
    img -= 0.25 * np.sqrt(lungs)
    img += 0.06 * lungs * (np.sin(2 * np.pi * (9 * y + 2.5 * (x - 0.5) ** 2)) > 0.55)  # ribs
    img += 0.28 * np.exp(-(((x - 0.5) / 0.045) ** 2))  # spine
    img += 0.12 * (((x - 0.68) / 0.035) ** 2 + ((y - 0.36) / 0.03) ** 2 < 1)  # nodule
    img += rng.normal(0.0, 0.006, img.shape)  # quantum noise
    hi = 2**bits_stored - 1
    out = np.clip(img / img.max() * 0.95, 0, 1) * hi
    out[8:30, 8:26] = hi  # lead "R" marker, saturated
    out[-12:, :] = 0  # collimator edge
    return np.round(out).astype(np.uint16)


def phantom(bits_stored: int = 12) -> np.ndarray:
    """Like ``radiograph`` in integer arithmetic only, so committed codestreams stay exact forever."""
    yy, xx = np.mgrid[0:ROWS, 0:COLS].astype(np.int64)
    img = 1500 + 6 * yy  # denser towards the diaphragm
    for cx in (78, 182):  # two darker lung fields crossed by ribs
        lung = 10_000 * (xx - cx) ** 2 // 44**2 + 10_000 * (yy - 135) ** 2 // 96**2 < 10_000
        ribs = (9 * yy + (xx - 130) ** 2 // 90) % 40 < 6
        img -= lung * (800 - 250 * ribs)
    img += 900 * (abs(xx - 130) < 12)  # spine
    img += ((xx * 7919 + yy * 104729) % 5) - 2  # deterministic grain
    img = np.clip(img, 0, 4095)
    img[8:30, 8:26] = 4095  # lead marker, saturated
    img[-12:, :] = 0  # collimator edge
    return (img * (2**bits_stored - 1) // 4095).astype(np.uint16)


def dataset(pixels: np.ndarray, bits_stored: int, *, photometric: str = "MONOCHROME2") -> Dataset:
    """An uncompressed (Explicit VR Little Endian) DX image dataset holding ``pixels``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = U.DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = U.generate_uid()
    meta.TransferSyntaxUID = U.ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Test^Syntaxes"
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    dtype = np.uint8 if bits_stored <= 8 else np.uint16
    ds.PixelData = pixels.astype(dtype).tobytes()
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def bundled(name: str) -> Path:
    """A test file shipped inside pydicom's wheel; never downloaded."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert isinstance(path, str), f"{name} is not bundled with this pydicom"
    return Path(path)


def native(tsyntax: U.UID) -> Encode:
    def encode(ds: Dataset, pixels: np.ndarray) -> None:
        ds.file_meta.TransferSyntaxUID = tsyntax  # pydicom writes (and deflates) per the meta

    return encode


def pydicom_compress(tsyntax: U.UID, package: str, **options: Any) -> Encode:
    """``Dataset.compress`` with pydicom's own encoder for ``tsyntax`` (needs ``package``)."""

    def encode(ds: Dataset, pixels: np.ndarray) -> None:
        from pydicom.pixels.encoders.base import get_encoder

        if not get_encoder(tsyntax).is_available:
            pytest.skip(f"encoding {tsyntax.name} needs {package}")
        ds.compress(tsyntax, pixels, **options)

    return encode


def gdcm_change(tsyntax: U.UID, gdcm_name: str, quality: int | None = None) -> Encode:
    """GDCM's ImageChangeTransferSyntax (JPEG Baseline with ``quality``, JPEG Lossless without)."""

    def encode(ds: Dataset, pixels: np.ndarray) -> None:
        import gdcm
        import pydicom

        with tempfile.TemporaryDirectory() as tmp:
            src, dst = save(ds, Path(tmp) / "in.dcm"), Path(tmp) / "out.dcm"
            reader = gdcm.ImageReader()
            reader.SetFileName(str(src))
            assert reader.Read(), f"GDCM cannot read {src}"
            change = gdcm.ImageChangeTransferSyntax()
            change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, gdcm_name)))
            if quality is not None:
                codec = gdcm.JPEGCodec()
                codec.SetLossless(False)
                codec.SetQuality(quality)
                change.SetUserCodec(codec)
            change.SetInput(reader.GetImage())
            assert change.Change(), f"GDCM cannot encode {tsyntax.name}"
            writer = gdcm.ImageWriter()
            writer.SetFileName(str(dst))
            writer.SetFile(reader.GetFile())
            writer.SetImage(change.GetOutput())
            assert writer.Write()
            out = pydicom.dcmread(dst)
        assert out.file_meta.TransferSyntaxUID == tsyntax
        _set_frame(ds, tsyntax, out.PixelData)

    return encode


def committed(tsyntax: U.UID, name: str) -> Encode:
    """A codestream from fixtures/dicom/ (its pixels are ``phantom()``), encapsulated."""

    def encode(ds: Dataset, pixels: np.ndarray) -> None:
        _set_frame(ds, tsyntax, encapsulate([(CODESTREAMS / name).read_bytes()]))

    return encode


def _set_frame(ds: Dataset, tsyntax: U.UID, pixel_data: bytes) -> None:
    ds.file_meta.TransferSyntaxUID = tsyntax
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OB"
    if tsyntax in (U.JPEGBaseline8Bit, U.JPEGExtended12Bit, U.HTJ2K):  # lossy as written here
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_15444_15" if tsyntax == U.HTJ2K else "ISO_10918_1"
