"""Every hostile input of issue 13 is read or refused with peak memory ≤ 512 MiB above baseline.

Each case runs ``read_image`` in a fresh interpreter (memprobe) on a file made by ``hostile``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile import deflate_bomb, lying_codestream, png8, png16, rle_bomb
from memprobe import Probe, assert_bounded, probe_all
from pydicom import uid as U

TARGET = "dinosearch.inputs.images:read_image"

CASES: dict[str, Callable[[Path], Path | str]] = {
    "deflate-bomb-32768x32768": lambda d: deflate_bomb(d / "a.dcm", columns=32768, rows=32768),
    "deflate-bomb-lying-512x512": lambda d: deflate_bomb(d / "b.dcm", columns=512, rows=512),
    "deflate-bomb-32-frames": lambda d: deflate_bomb(
        d / "c.dcm", columns=4096, rows=4096, frames=32
    ),
    "jpeg-ls-frame-claiming-40000x40000": lambda d: lying_codestream(d / "h.dcm", U.JPEGLSLossless),
    "rle-bomb-8mib": lambda d: rle_bomb(d / "i.dcm"),
    "png-1000000x1": lambda d: png8(d / "d.png", 1_000_000, 1),
    "png-100000x10": lambda d: png8(d / "e.png", 100_000, 10),
    "png16-9400x9400": lambda d: png16(d / "f.png", 9400, 9400),
    "dev-zero": lambda d: "/dev/zero",
    "dev-urandom": lambda d: "/dev/urandom",
    "fifo": lambda d: (os.mkfifo(d / "g.png"), d / "g.png")[1],
}
COMPLETES = {"png16-9400x9400"}  # within every limit: must decode, not just be refused


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Probe]:
    """All cases at once, each in its own process (the bound is per process; the wait is not)."""
    folder = tmp_path_factory.mktemp("hostile")
    paths = {case: str(make(folder)) for case, make in CASES.items()}
    return probe_all({case: (TARGET, path) for case, path in paths.items()}, timeout=120)


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev are POSIX")
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_stays_under_512_mib(case: str, probes: dict[str, Probe]) -> None:
    assert_bounded(case, probes[case], COMPLETES)
