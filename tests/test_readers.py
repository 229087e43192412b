"""Issue 21, classes 4, 6, 10 and 11 for one file: only documented formats are
decoded, decoded bytes are bounded, DICOMs pydicom reads are read, windows that hide everything fall
back with a warning, corrupt data is called corrupt (manifests and fetches: test_bounded_reads.py)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from dicom_data import bundled, dataset, save
from helpers import ramp, write_dicom
from hostile_images import cmyk_jpeg, cmyk_tiff, png
from PIL import EpsImagePlugin, Image
from pydicom import uid as U
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from dinosearch.inputs import images
from dinosearch.inputs.errors import ImageReadError
from dinosearch.inputs.grayscale import DicomWindowWarning
from dinosearch.inputs.images import read_image

EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\nshowpage\n"
)
WEBP = Path(__file__).parent / "fixtures" / "images" / "rgba_9990x9990_lossless.webp"


@pytest.fixture
def ghostscript_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every call to Pillow's Ghostscript runner (it would start `gs`), recorded and refused."""
    calls: list[object] = []

    def record(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise OSError("gs -q -dSAFER -sDEVICE=ppmraw would have run here")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", record)
    return calls


@pytest.mark.parametrize("as_bytes", [False, True], ids=["file", "upload"])
def test_postscript_named_png_never_reaches_ghostscript(
    tmp_path: Path, ghostscript_calls: list[object], as_bytes: bool
) -> None:
    path = tmp_path / "film.png"
    path.write_bytes(EPS)
    with pytest.raises(ImageReadError) as info:
        read_image(EPS, name="film.png") if as_bytes else read_image(path)
    assert ghostscript_calls == []
    message = str(info.value)
    assert "\n" not in message and "gs " not in message and "-dSAFER" not in message
    assert "PNG, JPEG, TIFF or DICOM" in message


def test_loader_fast_path_opens_only_jpeg(tmp_path: Path, ghostscript_calls: list[object]) -> None:
    from dinosearch.features.loader import read_reduced

    path = tmp_path / "film.jpg"
    path.write_bytes(EPS)
    with pytest.raises(ImageReadError):
        read_reduced(16)(str(path))
    assert ghostscript_calls == []


def test_webp_and_gif_are_not_documented_formats(tmp_path: Path) -> None:
    gif = tmp_path / "small.gif"
    Image.new("L", (8, 8)).save(gif)
    for path in (WEBP, gif):
        with pytest.raises(ImageReadError, match="PNG, JPEG, TIFF or DICOM"):
            read_image(path)
    assert ".webp" not in images.IMAGE_SUFFIXES and ".gif" not in images.IMAGE_SUFFIXES


def _no_preamble(pixels: np.ndarray, *, implicit: bool, little: bool) -> bytes:
    """A dataset as old CD exports hold it: no 128-byte preamble, no "DICM", no file meta."""
    ds = dataset(pixels, 16)
    del ds.file_meta
    if not little:
        ds.PixelData = pixels.astype(">u2").tobytes()
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = little, implicit
    write_dataset(out, ds)
    return out.getvalue()


@pytest.mark.parametrize(
    ("implicit", "little"), [(True, True), (False, True), (False, False)], ids=["ivr", "evr", "be"]
)
def test_dicom_without_preamble_or_suffix_reads(
    tmp_path: Path, implicit: bool, little: bool
) -> None:
    pixels = ramp()
    expected = np.asarray(read_image(save(dataset(pixels, 16), tmp_path / "with_meta.dcm")))
    path = tmp_path / "IM000001"  # no suffix
    path.write_bytes(_no_preamble(pixels, implicit=implicit, little=little))
    np.testing.assert_array_equal(np.asarray(read_image(path)), expected)
    np.testing.assert_array_equal(np.asarray(read_image(path.read_bytes())), expected)


def test_bundled_dicom_without_meta_reads(tmp_path: Path) -> None:
    """pydicom's own ExplVR_LitEndNoMeta.dcm has no pixel data: it is named as such, not "not an image"."""
    path = tmp_path / "NOMETA"
    shutil.copy(bundled("ExplVR_LitEndNoMeta.dcm"), path)
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_image(path)


@pytest.mark.parametrize(
    ("element", "bits", "dtype"),
    [("FloatPixelData", 32, np.float32), ("DoubleFloatPixelData", 64, np.float64)],
)
def test_float_pixel_data_reads(tmp_path: Path, element: str, bits: int, dtype: type) -> None:
    values = ramp().astype(dtype) / 7 - 100  # negative and fractional: truly float data
    ds = dataset(ramp(), 16)
    for name in ("PixelData", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, name)
    ds.BitsAllocated = bits
    setattr(ds, element, values.tobytes())
    out = np.asarray(read_image(save(ds, tmp_path / "float.dcm")))
    expected = np.round((values - values.min()) / np.ptp(values) * 255)
    np.testing.assert_allclose(out, expected, atol=1)


def test_window_missing_every_value_falls_back_with_a_warning(tmp_path: Path) -> None:
    plain = np.asarray(read_image(write_dicom(tmp_path / "plain.dcm", ramp())))
    path = write_dicom(tmp_path / "ct.dcm", ramp(), window=(40_000, 400))  # far above 0…4095
    with pytest.warns(DicomWindowWarning, match="no contrast"):
        img = read_image(path)
    assert "no contrast" in img.info["warning"]
    np.testing.assert_array_equal(np.asarray(img), plain)
    assert np.ptp(np.asarray(img)) == 255


def test_extreme_rescale_slope_falls_back_with_a_warning(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "slope.dcm", ramp(), slope=1e6, intercept=1e6, window=(40, 400))
    with pytest.warns(DicomWindowWarning):
        img = read_image(path)
    assert np.ptp(np.asarray(img)) == 255


def test_window_that_shows_something_is_kept_without_warning(tmp_path: Path) -> None:
    import warnings

    path = write_dicom(tmp_path / "ok.dcm", ramp(), window=(1000, 500))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DicomWindowWarning)
        img = read_image(path)
    assert "warning" not in img.info
    out = np.asarray(img)
    assert (out == 0).mean() > 0.1 and (out == 255).mean() > 0.5  # clipped by the window: used


def test_window_width_zero_falls_back(tmp_path: Path) -> None:
    plain = np.asarray(read_image(write_dicom(tmp_path / "plain.dcm", ramp())))
    path = write_dicom(tmp_path / "ww0.dcm", ramp(), window=(100, 0))
    with pytest.warns(DicomWindowWarning, match="cannot be applied"):
        img = read_image(path)
    np.testing.assert_array_equal(np.asarray(img), plain)


def test_broken_voi_lut_falls_back(tmp_path: Path) -> None:
    ds = dataset(ramp(), 16)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = struct.pack("<3H", 0, 1, 2)  # 3 entries where 4,096 are declared
    item["LUTData"].VR = "OW"
    ds.VOILUTSequence = [item]
    with pytest.warns(DicomWindowWarning):
        img = read_image(save(ds, tmp_path / "voi.dcm"))
    assert np.ptp(np.asarray(img)) == 255


def test_corrupt_compressed_data_says_corrupt(tmp_path: Path) -> None:
    from pydicom.encaps import encapsulate, generate_frames

    ds = dataset(ramp(64, 64), 12)
    ds.compress(U.JPEGLSLossless)
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    start = frame.find(b"\xff\xda")  # keep the headers (the size check passes), garble the scan
    frame[start + 20 :] = b"\xff\x00" * ((len(frame) - start - 20) // 2) + b"\xff" * (
        (len(frame) - start - 20) % 2
    )
    ds.PixelData = encapsulate([bytes(frame[: start + 40])])
    with pytest.raises(ImageReadError) as info:
        read_image(save(ds, tmp_path / "corrupt.dcm"))
    assert "corrupt" in info.value.reason and "reinstall" not in info.value.reason


def test_missing_codec_still_says_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixels import get_decoder

    ds = dataset(ramp(64, 64), 12)
    ds.compress(U.JPEGLSLossless)
    path = save(ds, tmp_path / "jls.dcm")
    decoder = get_decoder(U.JPEGLSLossless)
    monkeypatch.setattr(decoder, "_available", {}, raising=False)
    monkeypatch.setattr(type(decoder), "is_available", property(lambda self: False))
    monkeypatch.setattr(decoder, "_validate_plugins", lambda *a, **k: {}, raising=False)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert "install" in info.value.reason and "corrupt" not in info.value.reason


@pytest.mark.parametrize("mode", ["P-transparent", "LA", "RGBA", "CMYK", "PA", "1"])
def test_strip_conversion_equals_whole_image_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    rng = np.random.default_rng(0)
    bands = {"LA": 2, "RGBA": 4, "CMYK": 4, "PA": 2}.get(mode, 1)
    arr = rng.integers(0, 256, (37, 23, bands), dtype=np.uint8).squeeze()
    if mode == "P-transparent":
        img = Image.fromarray(arr, "L").convert("P")
        img.info["transparency"] = 7
    elif mode == "1":
        img = Image.fromarray(arr, "L").convert("1")
    else:
        img = Image.fromarray(arr, mode)
    whole = images._strip_to_l_or_rgb(img.copy())  # one strip: the conversion as it always was
    monkeypatch.setattr(images, "STRIP_PIXELS", 23 * 5)  # 5 rows a strip, 8 strips
    strips = images._to_l_or_rgb(img)
    assert strips.mode == whole.mode
    np.testing.assert_array_equal(np.asarray(strips), np.asarray(whole))


def test_over_budget_jpeg_is_decoded_reduced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinosearch.inputs import decoded

    path = cmyk_jpeg(tmp_path / "cmyk.jpg", 400)
    assert read_image(path).size == (400, 400)
    monkeypatch.setattr(decoded, "MAX_DECODED_BYTES", 400 * 400 * 2)
    img = read_image(path)
    assert img.mode == "RGB" and img.size == (200, 200)


@pytest.mark.parametrize("kind", ["rgba-png", "cmyk-tiff"])
def test_over_budget_image_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    from dinosearch.inputs import decoded

    path = (
        png(tmp_path / "a.png", 400, 6)
        if kind == "rgba-png"
        else cmyk_tiff(tmp_path / "a.tif", 400)
    )
    assert read_image(path).size == (400, 400)
    monkeypatch.setattr(decoded, "MAX_DECODED_BYTES", 400 * 400 * 4)
    loaded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loaded.append(self))
    with pytest.raises(ImageReadError, match="DINOSEARCH_MAX_DECODED_BYTES"):
        read_image(path)
    assert loaded == []


def test_png_exif_orientation_is_applied_without_decoding_first(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.new("L", (30, 20), 9).save(tmp_path / "o.png", exif=exif)
    assert read_image(tmp_path / "o.png").size == (20, 30)
