"""Hostile and careless inputs (issue 13: items 1, 3, 4, 5, 7, and 8 for folders) are refused or skipped
cleanly, quickly and by name. Their memory bound is in test_memory_bound.py."""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hostile import deflate_bomb, png8
from PIL import Image
from pydicom import uid as U
from pydicom.encaps import encapsulate

from dinosearch.inputs import ImageReadError, load_records, read_image
from dinosearch.inputs.limits import MAX_ASPECT_RATIO, MAX_FILE_BYTES
from dinosearch.inputs.pixels import gray_to_u8

needs_posix = pytest.mark.skipif(
    sys.platform == "win32", reason="FIFOs, sockets and /dev are POSIX"
)


def refused(path: Path | str, match: str) -> ImageReadError:
    """read_image(path) raises ImageReadError naming the file and matching ``match``, within 10 s."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            read_image(path)
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    worker = threading.Thread(target=run, daemon=True)  # a FIFO would block it forever
    worker.start()
    worker.join(10)
    assert outcome, f"read_image({path}) still running after 10 s"
    error = outcome[0]
    assert isinstance(error, ImageReadError), f"expected ImageReadError, got {error!r}"
    assert str(path) in str(error) and re.search(match, str(error)), error
    return error


# ---- 1. DICOM decompression bombs ------------------------------------------------------------


def test_deflate_bomb_declaring_a_huge_image_is_refused_from_its_header(tmp_path: Path) -> None:
    path = deflate_bomb(tmp_path / "huge.dcm", columns=32768, rows=32768)
    assert path.stat().st_size < 2 << 20
    refused(path, r"32768x32768 pixels, over the 100,000,000 limit")


def test_deflate_bomb_lying_about_its_size_is_refused_while_inflating(tmp_path: Path) -> None:
    """Declares 512 x 512 (512 KB) but inflates to 1 GiB: refused a little past the declared size."""
    path = deflate_bomb(tmp_path / "liar.dcm", columns=512, rows=512)
    error = refused(path, r"Deflated DICOM data inflates to more than [\d,]+ bytes")
    assert "declares 512x512 pixels" in str(error) and "limit 268,435,456 bytes" in str(error)


def test_deflate_bomb_of_many_frames_is_refused_at_the_inflate_limit(tmp_path: Path) -> None:
    """32 honest 4096 x 4096 16-bit frames (1 GiB): each frame is fine, the whole is not inflated."""
    path = deflate_bomb(tmp_path / "frames.dcm", columns=4096, rows=4096, frames=32)
    refused(path, r"inflates to more than 268,435,456 bytes")


def test_dicom_frame_declared_over_the_byte_limit_is_refused_before_decoding(
    tmp_path: Path,
) -> None:
    """10,000 x 10,000 RGB 16-bit (600 MB) under RLE: refused from the header, nothing decoded."""
    from dicom_data import dataset, save

    ds = dataset(np.zeros((2, 2), np.uint16), 16)
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 10_000, 10_000, 3
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "RGB", 0
    ds.file_meta.TransferSyntaxUID = U.RLELossless
    ds.PixelData = encapsulate([b"\0" * 64])
    ds["PixelData"].VR = "OB"
    refused(save(ds, tmp_path / "rgb48.dcm"), r"600,000,000 bytes decoded, over the 268,435,456")


@pytest.mark.parametrize("tsyntax", [U.JPEGLSLossless, U.JPEG2000Lossless], ids=["jpeg-ls", "j2k"])
def test_codestream_claiming_more_pixels_than_the_header_is_refused(
    tmp_path: Path, tsyntax: U.UID
) -> None:
    """Codecs trust the codestream: CharLS aborted the process on this 700-byte JPEG-LS file."""
    from hostile import lying_codestream

    path = lying_codestream(tmp_path / "liar.dcm", tsyntax)
    refused(path, r"frame is 40000x40000 pixels but the DICOM header declares 64x64")


def test_rle_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    """8 MiB of 128-byte runs would decode to 512 MiB for a 64 x 64 film."""
    from hostile import rle_bomb

    refused(rle_bomb(tmp_path / "rle.dcm"), r"RLE segment decodes to more than 8,192 bytes")


def test_deflated_dicom_within_limits_still_reads(tmp_path: Path) -> None:
    from dicom_data import dataset, radiograph, save

    ds = dataset(radiograph(12), 12)
    ds.file_meta.TransferSyntaxUID = U.DeflatedExplicitVRLittleEndian
    plain = read_image(save(dataset(radiograph(12), 12), tmp_path / "plain.dcm"))
    deflated = read_image(save(ds, tmp_path / "deflated.dcm"))
    np.testing.assert_array_equal(np.asarray(deflated), np.asarray(plain))


# ---- 3. extreme aspect ratios ----------------------------------------------------------------


@pytest.mark.parametrize("size", [(1_000_000, 1), (100_000, 10), (10, 100_000)])
def test_extreme_aspect_ratio_is_refused(tmp_path: Path, size: tuple[int, int]) -> None:
    path = png8(tmp_path / "strip.png", *size)
    refused(path, rf"{size[0]}x{size[1]} pixels, an aspect ratio over the 1:{MAX_ASPECT_RATIO}")


def test_aspect_ratio_at_the_limit_reads(tmp_path: Path) -> None:
    img = read_image(png8(tmp_path / "long.png", 10 * MAX_ASPECT_RATIO, 10))
    assert img.size == (10 * MAX_ASPECT_RATIO, 10)


# ---- 4. anything but a regular file ----------------------------------------------------------


@needs_posix
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    refused(fifo, "FIFO")


@needs_posix
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_device_files_are_refused_at_once(device: str) -> None:
    refused(device, "character device, not a regular file")


@needs_posix
def test_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        refused(path, "socket")


def test_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.png").mkdir()
    refused(tmp_path / "x.png", "is a folder")


def test_path_with_a_nul_character_is_refused() -> None:
    with pytest.raises(ImageReadError, match="embedded null byte"):
        read_image("x\0.png")


def test_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written
    refused(path, rf"{MAX_FILE_BYTES + 1:,} bytes, over the {MAX_FILE_BYTES:,} limit")
    with pytest.raises(ImageReadError, match="over the"):
        read_image(b"\0" * (MAX_FILE_BYTES + 1), name="upload.png")


# ---- 5. 16-bit conversion without whole-image float64 (exactness here; memory elsewhere) -------


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "<i2", "u1", "<i4", "<f4", "<f8"])
def test_strip_scaling_equals_the_whole_image_float64_formula(dtype: str) -> None:
    rng = np.random.default_rng(0)
    arr = (rng.normal(0, 1, (37, 29)) * 3000 + (1000 if "u" in dtype else 0)).astype(dtype)
    if arr.dtype.kind == "f":
        arr[3, 4] = np.nan
    lut = (lambda v: v * 2.0 - 7.0) if arr.dtype.itemsize <= 2 else None
    values = arr.astype(np.float64) if lut is None else lut(arr.astype(np.float64))
    lo, hi = np.nanmin(values), np.nanmax(values)
    want = np.nan_to_num((values - lo) / (hi - lo) * 255.0).round().astype(np.uint8)
    got = gray_to_u8(lambda y0, y1: arr[y0:y1], arr.shape, arr.dtype, lut)
    np.testing.assert_array_equal(got, want)


def test_sixteen_bit_png_keeps_its_ramp(tmp_path: Path) -> None:
    from hostile import png16

    arr = np.asarray(read_image(png16(tmp_path / "r.png", 300, 40)))
    assert arr.dtype == np.uint8 and arr.min() == 0 and arr.max() == 255
    assert np.all(np.diff(arr[0].astype(int)) >= 0) and (arr == arr[0]).all()


# ---- 7. names and rows that are not paths ----------------------------------------------------


def bad_name(folder: Path) -> Path:
    """Create a file whose name is not UTF-8 (b"caf\\xe9.png"), or skip where the OS forbids it."""
    path = Path(os.fsdecode(bytes(folder) + b"/caf\xe9.png"))
    try:
        Image.new("L", (20, 20), 90).save(path, format="PNG")
    except (OSError, UnicodeEncodeError) as e:
        pytest.skip(f"this file system refuses non-UTF-8 names ({e})")
    return path


def test_non_utf8_file_name_is_skipped_and_reported(tmp_path: Path) -> None:
    bad_name(tmp_path)
    Image.new("L", (20, 20), 30).save(tmp_path / "ok.png")
    records, skipped = load_records(tmp_path)
    assert records["id"].tolist() == ["ok"]
    assert skipped["path"].tolist() == [f"{tmp_path}/caf\\xe9.png"]
    assert "not valid UTF-8" in skipped["reason"][0]
    skipped.to_csv(tmp_path / "skipped.csv")  # printable: writing it must not raise


def test_read_image_errors_print_non_utf8_names(tmp_path: Path) -> None:
    path = bad_name(tmp_path)
    assert read_image(path).size == (20, 20)
    path.write_bytes(b"garbage")
    with pytest.raises(ImageReadError, match=r"caf\\xe9\.png") as info:
        read_image(path)
    str(info.value).encode("utf-8")  # no lone surrogates


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_manifest_rows_without_a_usable_path_are_skipped_by_row(tmp_path: Path, fmt: str) -> None:
    Image.new("L", (20, 20), 30).save(tmp_path / "ok.png")
    paths: list[object] = ["ok.png", None, "", float("nan"), " "]
    table = pd.DataFrame({"file": paths, "patient_id": range(5)})
    if fmt == "csv":
        table.to_csv(tmp_path / "m.csv", index=False)
    else:
        table["file"] = table["file"].astype(object)
        table.to_parquet(tmp_path / "m.parquet")
    records, skipped = load_records(tmp_path / f"m.{fmt}")
    assert records["id"].tolist() == ["ok"] and records["patient_id"].tolist() == [0]
    assert len(skipped) == 4
    assert skipped["path"][0].endswith(f"m.{fmt} row 2" + (", line 3" if fmt == "csv" else ""))
    assert all("column 'file'" in reason for reason in skipped["reason"])


def test_manifest_with_only_non_text_paths_gives_no_records_and_says_why(tmp_path: Path) -> None:
    pd.DataFrame({"path": [3, 4]}).to_parquet(tmp_path / "m.parquet")
    records, skipped = load_records(tmp_path / "m.parquet")
    assert records.empty and list(records.columns[:2]) == ["id", "path"]
    assert skipped["reason"].str.contains(r"column 'path' is not text \(3\)").tolist() == [
        True,
        False,
    ]


# ---- 8. folder ids: one.png and one.jpg ------------------------------------------------------


def test_same_stem_files_in_a_folder_get_distinct_ids(tmp_path: Path) -> None:
    for name in ["one.png", "one.jpg", "one.png.jpg", "two.png", "sub/one.png"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("L", (20, 20)).save(tmp_path / name, format="PNG")
    records, _ = load_records(tmp_path, label_from_folder=False)
    assert records["id"].tolist() == ["one.jpg", "one.png", "one.png.jpg", "sub/one", "two"]


@needs_posix
def test_embed_skips_bad_names_rows_and_fifos_and_reports_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole ``embed`` run survives a non-UTF-8 name, a NaN row, a FIFO and /dev/zero, and lists
    each (the manifest's FIFO and device are passed over by load_records, before any reader)."""
    from helpers import TINY_CLI

    from dinosearch.cli import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    bad_name(folder)
    for i in range(3):
        Image.new("L", (40, 40), 40 * i).save(folder / f"ok{i}.png")
    args = [*TINY_CLI, "--no-progress", "--workers", "0"]
    assert main(["embed", "--images", str(folder), "--out", str(tmp_path / "a"), *args]) == 0
    assert "caf\\xe9.png: file or folder name is not valid UTF-8" in capsys.readouterr().out

    os.mkfifo(folder / "pipe.png")
    paths = ["imgs/ok0.png", None, "imgs/pipe.png", "/dev/zero", "imgs/ok1.png"]
    pd.DataFrame({"path": paths}).to_csv(tmp_path / "m.csv", index=False)
    assert (
        main(["embed", "--images", str(tmp_path / "m.csv"), "--out", str(tmp_path / "b"), *args])
        == 0
    )
    printed = capsys.readouterr().out
    assert "embedded 2 images" in printed
    skipped = pd.read_csv(tmp_path / "b" / "skipped.csv")
    assert skipped["path"].str.endswith("m.csv row 2, line 3").sum() == 1
    assert skipped["reason"].str.contains("FIFO").sum() == 1
    assert skipped["reason"].str.contains("/dev/zero is a character device").sum() == 1
