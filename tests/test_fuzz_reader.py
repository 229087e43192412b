"""Fuzzing ``read_image``: random, mutated and truncated PNG, JPEG, TIFF and DICOM bytes either read
or raise ImageReadError, never anything else (issue 13). 200 examples by default; set
DINOSEARCH_FUZZ_EXAMPLES for a longer run."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from dicom_data import dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom import uid as U

from dinosearch.inputs import ImageReadError, read_image

EXAMPLES = int(os.environ.get("DINOSEARCH_FUZZ_EXAMPLES", "200"))
BOUNDARIES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]


def _pil(mode: str, fmt: str) -> bytes:
    arr = np.add.outer(np.arange(12) * 700, np.arange(16) * 300)
    img = Image.fromarray(arr.astype(np.uint16)) if mode == "I;16" else Image.new(mode, (16, 12))
    if mode != "I;16":
        img.paste(Image.fromarray((arr % 256).astype(np.uint8)).convert(mode))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _dicom(tsyntax: U.UID) -> bytes:
    ds = dataset((np.add.outer(np.arange(48), np.arange(64)) * 36).astype(np.uint16), 12)
    if tsyntax in (U.RLELossless, U.JPEGLSLossless, U.JPEG2000Lossless):
        ds.compress(tsyntax)
    else:
        ds.file_meta.TransferSyntaxUID = tsyntax
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


SEEDS = {
    "seed.png": _pil("L", "PNG"),
    "seed16.png": _pil("I;16", "PNG"),
    "seed.jpg": _pil("RGB", "JPEG"),
    "seed.tif": _pil("L", "TIFF"),
    "seed.dcm": _dicom(U.ExplicitVRLittleEndian),
    "deflated.dcm": _dicom(U.DeflatedExplicitVRLittleEndian),
    "rle.dcm": _dicom(U.RLELossless),
    "jls.dcm": _dicom(U.JPEGLSLossless),
    "j2k.dcm": _dicom(U.JPEG2000Lossless),
}


@st.composite
def hostile_bytes(draw: st.DrawFn) -> tuple[str, bytes]:
    """(name, bytes): a seed file mutated (flips, boundary integers, splices, truncation) or noise."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    op = draw(st.sampled_from(["noise", "flip", "integer", "splice", "truncate"]))
    if op == "noise":
        data = bytearray(draw(st.binary(max_size=4096)))
    for _ in range(draw(st.integers(1, 6)) if op in ("flip", "integer", "splice") else 0):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip":
            data[at : at + 1] = bytes([draw(st.integers(0, 255))])
        elif op == "integer":
            width = draw(st.sampled_from([2, 4]))
            value = draw(st.sampled_from(BOUNDARIES)) & ((1 << (8 * width)) - 1)
            data[at : at + width] = value.to_bytes(width, draw(st.sampled_from(["little", "big"])))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
    if op == "truncate" or draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return draw(st.sampled_from([name, "upload"])), bytes(data)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seeds_read(name: str) -> None:
    assert read_image(SEEDS[name], name=name).mode in ("L", "RGB")


@pytest.mark.filterwarnings("ignore::UserWarning")  # decoders warn about the damage they meet
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hostile_bytes())
def test_reader_reads_or_raises_image_read_error(case: tuple[str, bytes]) -> None:
    name, data = case
    try:
        img = read_image(data, name=name)
    except ImageReadError as e:
        assert e.path == name and str(e).startswith(name)
        return
    assert img.mode in ("L", "RGB") and img.width > 0 and img.height > 0
