"""Issue 21, class 6: images within every pixel limit whose decoded bytes are not stay ≤ 512 MiB.

Each case runs ``read_image`` in a fresh interpreter (memprobe) on a file made by ``hostile_images``
(or the committed 4 KB WebP); before the fix they peaked at 0.76–2.3 GiB.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_images import cmyk_jpeg, cmyk_tiff, png
from memprobe import Probe, assert_bounded, probe_all

TARGET = "dinosearch.inputs.images:read_image"
SIZE = 9990  # 99.8 Mpx: under DINOSEARCH_MAX_IMAGE_PIXELS (100 Mpx)
WEBP = Path(__file__).parent / "fixtures" / "images" / "rgba_9990x9990_lossless.webp"

CASES: dict[str, Callable[[Path], Path]] = {
    "webp-rgba-lossless-4kb": lambda d: WEBP,
    "png-palette-transparency": lambda d: png(d / "p.png", SIZE, 3, palette_alpha=True),
    "png-la": lambda d: png(d / "la.png", SIZE, 4),
    "png-rgba": lambda d: png(d / "rgba.png", SIZE, 6),
    "jpeg-cmyk": lambda d: cmyk_jpeg(d / "c.jpg", SIZE),
    "tiff-cmyk": lambda d: cmyk_tiff(d / "c.tif", SIZE),
}
COMPLETES = {"jpeg-cmyk"}  # decoded at half size (libjpeg scales in the DCT), not refused


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Probe]:
    """All cases, each in its own process (the bound is per process), two at a time."""
    folder = tmp_path_factory.mktemp("decoded")
    paths = {case: str(make(folder)) for case, make in CASES.items()}
    results: dict[str, Probe] = {}
    names = list(paths)
    for i in range(0, len(names), 2):  # old code peaked at 2.3 GiB a case: not all at once
        batch = {case: (TARGET, paths[case]) for case in names[i : i + 2]}
        results.update(probe_all(batch, timeout=120))
    return results


@pytest.mark.skipif(sys.platform == "win32", reason="VmHWM is Linux; ru_maxrss elsewhere")
@pytest.mark.parametrize("case", list(CASES))
def test_decoded_bytes_stay_under_512_mib(case: str, probes: dict[str, Probe]) -> None:
    assert_bounded(case, probes[case], COMPLETES)
