"""Every common DICOM transfer syntax a hospital archive hands out reads through ``read_image``.

Each case writes one synthetic 12-bit chest-film-like image (300 rows x 260 columns, MONOCHROME2) in
one transfer syntax, in ``tmp_path``, and compares what ``read_image`` makes of it with what it makes
of the same pixels stored uncompressed: identical for lossless syntaxes, close for lossy ones.

Decoding needs the project's DICOM codec dependencies (pydicom plugins); a missing decoder fails the
test. The test data comes from the encoders in ``dicom_data`` (pydicom's, GDCM's, and committed
codestreams for what neither writes); nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dicom_data import (
    COLS,
    ROWS,
    Encode,
    bundled,
    committed,
    dataset,
    gdcm_change,
    native,
    phantom,
    pydicom_compress,
    radiograph,
    save,
)
from pydicom import uid as U

from dinosearch.inputs.images import read_image


@dataclass(frozen=True)
class Case:
    id: str
    encode: Encode
    bits_stored: int = 12
    lossless: bool = True
    # lossy only: bounds on |compressed - uncompressed| of read_image's 8-bit output
    mean_tol: float = 0.0
    max_tol: int = 0
    pixels: Callable[[int], np.ndarray] = radiograph  # phantom for committed codestreams


def lossy(id: str, encode: Encode, mean_tol: float, max_tol: int, **options: Any) -> Case:
    return Case(id, encode, lossless=False, mean_tol=mean_tol, max_tol=max_tol, **options)


CASES = [
    Case("explicit-vr-le", native(U.ExplicitVRLittleEndian)),
    Case("implicit-vr-le", native(U.ImplicitVRLittleEndian)),
    Case("deflated-explicit-vr-le", native(U.DeflatedExplicitVRLittleEndian)),
    Case("rle-lossless", pydicom_compress(U.RLELossless, "nothing (built in)")),
    lossy(
        "jpeg-baseline-8bit",
        gdcm_change(U.JPEGBaseline8Bit, "JPEGBaselineProcess1", quality=90),
        2.5,
        24,
        bits_stored=8,
    ),
    lossy(
        "jpeg-extended-12bit",
        committed(U.JPEGExtended12Bit, "phantom12_jpeg_extended_q90.jpg"),
        0.5,
        4,
        pixels=phantom,
    ),
    Case(
        "jpeg-lossless-p14-predictor6",
        committed(U.JPEGLossless, "phantom12_jpeg_lossless_p6.jpg"),
        pixels=phantom,
    ),
    Case("jpeg-lossless-sv1", gdcm_change(U.JPEGLosslessSV1, "JPEGLosslessProcess14_1")),
    Case(
        "jpeg-lossless-sv1-16bit",
        gdcm_change(U.JPEGLosslessSV1, "JPEGLosslessProcess14_1"),
        bits_stored=16,
    ),
    Case("jpeg-ls-lossless", pydicom_compress(U.JPEGLSLossless, "pyjpegls")),
    lossy(
        "jpeg-ls-near-lossless",
        pydicom_compress(U.JPEGLSNearLossless, "pyjpegls", jls_error=3),
        0.5,
        1,
    ),
    Case("jpeg2000-lossless", pydicom_compress(U.JPEG2000Lossless, "pylibjpeg-openjpeg")),
    Case(
        "jpeg2000-lossless-16bit",
        pydicom_compress(U.JPEG2000Lossless, "pylibjpeg-openjpeg"),
        bits_stored=16,
    ),
    lossy(
        "jpeg2000-lossy",
        pydicom_compress(U.JPEG2000, "pylibjpeg-openjpeg", j2k_cr=[20]),
        2.5,
        16,
    ),
    Case(
        "htj2k-lossless",
        committed(U.HTJ2KLossless, "phantom12_htj2k_lossless.j2c"),
        pixels=phantom,
    ),
    lossy(
        "htj2k-lossy",
        committed(U.HTJ2K, "phantom12_htj2k_lossy.j2c"),
        2.5,
        16,
        pixels=phantom,
    ),
]


def pixels_for(case: Case) -> np.ndarray:
    if case.bits_stored <= 8:
        return (case.pixels(12) >> 4).astype(np.uint8)
    return case.pixels(case.bits_stored)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_transfer_syntax_reads_like_uncompressed(case: Case, tmp_path: Path) -> None:
    pixels = pixels_for(case)
    reference = read_image(save(dataset(pixels, case.bits_stored), tmp_path / "reference.dcm"))

    ds = dataset(pixels, case.bits_stored)
    case.encode(ds, pixels)
    path = save(ds, tmp_path / f"{case.id}.dcm")

    img = read_image(path)

    assert img.mode == "L"
    assert img.size == (COLS, ROWS)
    got, want = np.asarray(img, dtype=np.int16), np.asarray(reference, dtype=np.int16)
    assert want.min() == 0 and want.max() == 255  # the reference uses the full 8-bit range
    diff = np.abs(got - want)
    if case.lossless:
        assert diff.max() == 0, f"lossless {case.id} differs in {(diff > 0).sum()} pixels"
    else:
        assert diff.mean() <= case.mean_tol, f"mean error {diff.mean():.2f}"
        assert diff.max() <= case.max_tol, f"max error {diff.max()}"
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.995


def test_monochrome1_under_jpeg_lossless_is_inverted(tmp_path: Path) -> None:
    """A compressed MONOCHROME1 film (bone dark in the data) reads with bone white, as MONOCHROME2."""
    pixels = radiograph(12)
    m2 = read_image(save(dataset(pixels, 12), tmp_path / "m2.dcm"))

    ds = dataset(pixels, 12, photometric="MONOCHROME1")
    gdcm_change(U.JPEGLosslessSV1, "JPEGLosslessProcess14_1")(ds, pixels)
    m1 = read_image(save(ds, tmp_path / "m1.dcm"))

    assert m1.mode == "L" and m1.size == (COLS, ROWS)
    np.testing.assert_array_equal(np.asarray(m1), 255 - np.asarray(m2))


def test_pydicom_test_file_jpeg_extended_12bit(tmp_path: Path) -> None:
    """pydicom's bundled 12-bit JPEG Extended file (shipped in its wheel, not downloaded) reads."""
    img = read_image(bundled("JPGExtended.dcm"))
    assert img.mode == "L" and img.size == (256, 1024)
    assert np.asarray(img).std() > 10


def test_ybr_jpeg_baseline_colour_matches_rgb_jpeg() -> None:
    """Colour JPEG Baseline is stored as YBR_FULL(_422); it must read like the same picture in RGB.

    Uses files bundled in pydicom's wheel (never downloaded): one image saved by DCMTK in RGB and YBR.
    """
    rgb = read_image(bundled("SC_rgb_dcmtk_+eb+cr.dcm"))
    for name in ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm"):  # YBR_FULL, _422
        ybr = read_image(bundled(name))
        assert ybr.mode == "RGB" and ybr.size == rgb.size
        diff = np.abs(np.asarray(ybr, dtype=np.int16) - np.asarray(rgb, dtype=np.int16))
        assert diff.mean() < 8, f"{name}: colours differ by {diff.mean():.1f} on average"
