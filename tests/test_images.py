"""Reading every format hospitals and researchers really have, and failing clearly on the rest."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from helpers import ramp, write_dicom
from PIL import Image

from dinosearch.inputs.images import ImageReadError, read_image


def test_png_8bit_stays_grayscale(tmp_path: Path) -> None:
    Image.fromarray(ramp(hi=255).astype(np.uint8)).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.mode == "L" and img.size == (48, 32)
    assert np.asarray(img)[0, 0] == 0 and np.asarray(img)[0, -1] == 255


def test_png_16bit_is_scaled_to_full_range(tmp_path: Path) -> None:
    Image.fromarray(ramp(hi=4095)).save(tmp_path / "a16.png")
    assert Image.open(tmp_path / "a16.png").mode.startswith("I")
    arr = np.asarray(read_image(tmp_path / "a16.png"))
    assert arr.dtype == np.uint8 and arr.min() == 0 and arr.max() == 255
    assert np.all(np.diff(arr[0].astype(int)) >= 0)  # monotone ramp survives


def test_tiff_16bit(tmp_path: Path) -> None:
    Image.fromarray(ramp(hi=60000)).save(tmp_path / "a.tif")
    arr = np.asarray(read_image(tmp_path / "a.tif"))
    assert arr.max() == 255 and arr.min() == 0


def test_dicom_monochrome2_applies_rescale_and_window(tmp_path: Path) -> None:
    pixels = ramp(hi=2000)
    path = write_dicom(
        tmp_path / "m2.dcm", pixels, slope=2.0, intercept=-1000.0, window=(0.0, 1000.0)
    )
    arr = np.asarray(read_image(path)).astype(int)
    # Rescaled values span -1000..3000; window 0±500 clips: left part black, right part white.
    hu = pixels[0] * 2.0 - 1000.0
    assert np.all(arr[0][hu <= -500] == 0)
    assert np.all(arr[0][hu >= 500] == 255)
    inside = (hu > -400) & (hu < 400)
    assert 0 < arr[0][inside].min() < arr[0][inside].max() < 255


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    pixels = ramp(hi=1000)
    m1 = np.asarray(read_image(write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1")))
    m2 = np.asarray(read_image(write_dicom(tmp_path / "m2.dcm", pixels)))
    assert m2[0, 0] == 0 and m1[0, 0] == 255
    np.testing.assert_array_equal(m1.astype(int), 255 - m2.astype(int))


def test_dicom_without_extension_and_from_bytes(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "study.dcm", ramp())
    plain = tmp_path / "IM0001"
    plain.write_bytes(path.read_bytes())
    assert read_image(plain).mode == "L"
    assert read_image(path.read_bytes(), name="upload.dcm").size == (48, 32)


def test_cmyk_palette_rgba_become_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").mode == "RGB"
    pal = Image.new("RGB", (20, 10), (200, 10, 10)).convert("P", palette=Image.Palette.ADAPTIVE)
    pal.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").getpixel((0, 0))[0] > 150
    rgba = Image.new("RGBA", (20, 10), (255, 255, 255, 0))
    rgba.save(tmp_path / "t.png")
    out = read_image(tmp_path / "t.png")
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (0, 0, 0)  # transparent → black
    Image.new("LA", (20, 10), (255, 255)).save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").mode == "L"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("L", (40, 20), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.save(tmp_path / "o.jpg", exif=exif)
    assert read_image(tmp_path / "o.jpg").size == (20, 40)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"hello, not an image", "not an image"),
    ],
)
def test_bad_bytes_name_the_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_image(path)
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        buf, "JPEG"
    )
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        read_image(path)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="limit"):
        read_image(tmp_path / "big.png", max_pixels=10_000)


def test_missing_file() -> None:
    with pytest.raises(ImageReadError, match="cannot open"):
        read_image("/nonexistent/x.png")


def test_dicom_without_pixels(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp())
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_image(path)
