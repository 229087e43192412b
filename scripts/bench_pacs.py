"""Benchmark the DICOMweb source and `sync --watch` against a real local Orthanc.

    PYTHONPATH=.:tests .venv/bin/python scripts/bench_pacs.py              # 80 films, 20 watched
    PYTHONPATH=.:tests .venv/bin/python scripts/bench_pacs.py --films 200 --workers 4

1. Ingest: images/s of `embed` from Orthanc (QIDO-RS + WADO-RS) vs the same DICOM files from disk,
   in the same run, with the same backbone (default the tiny untrained test model, so the figure is
   the input path's, not the model's).
2. Store → searchable: `dinosearch sync --watch S` runs in a subprocess; films are stored one at a
   time and each is timed from its POST until the live raw index holds it (median, p95).
Needs Orthanc with the DICOMweb plugin (scripts/setup.sh); uses tests/orthanc.py and
tests/archive_films.py for the server and the films (the bundled sample written as DICOM).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from archive_films import sample_rows, write_films
from orthanc import Orthanc, available
from pydicom import dcmread

from dinosearch.cli import main as cli
from dinosearch.index.publish import current_version
from dinosearch.inputs.dicomweb import dicom_metadata

TINY = ["--backbone", "dinov2_tiny_test", "--weights", "random", "--image-size", "56"]


def ingest(server: Orthanc, films: list[Path], work: Path, flags: list[str]) -> None:
    rows = []
    for path in films:
        ds = dcmread(path, stop_before_pixels=True)
        rows.append({"id": str(ds.SOPInstanceUID), "path": str(path), **dicom_metadata(ds)})
    pd.DataFrame(rows).to_csv(work / "disk.csv", index=False)
    rates = {}
    for name, source in (("disk", str(work / "disk.csv")), ("orthanc", server.dicomweb)) * 2:
        began = time.perf_counter()
        assert cli(["embed", "--images", source, "--out", str(work / name), *flags]) == 0
        rates[name] = len(films) / (time.perf_counter() - began)  # the second (warm) run counts
    print(
        f"ingest: {rates['orthanc']:.1f} images/s from Orthanc, {rates['disk']:.1f} images/s from "
        f"disk ({len(films)} films, same run): ratio {rates['orthanc'] / rates['disk']:.2f}"
    )


def watch(server: Orthanc, films: list[Path], work: Path, flags: list[str], every: float) -> None:
    raw = work / "raw"
    argv = [sys.executable, "-m", "dinosearch", "sync", "--archive", server.dicomweb]
    argv += ["--features", str(work / "wf"), "--index", str(raw), "--watch", str(every), *flags]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    waits = []
    try:
        server.store(films[:1])  # the first pass builds the folders
        _wait_for(raw, dcmread(films[0]).SOPInstanceUID, 120)
        for path in films[1:]:
            uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
            began = time.perf_counter()
            server.store([path])
            _wait_for(raw, uid, 120)
            waits.append(time.perf_counter() - began)
    finally:
        proc.terminate()
        proc.wait(10)
    w = np.array(waits)
    print(
        f"store → searchable with sync --watch {every:g}: median {np.median(w):.2f} s, "
        f"p95 {np.percentile(w, 95):.2f} s, max {w.max():.2f} s over {len(w)} films"
    )


def _wait_for(raw: Path, uid: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            version = raw / "versions" / current_version(raw) / "metadata.parquet"
            if uid in set(pd.read_parquet(version, columns=["id"])["id"]):
                return
        except (FileNotFoundError, ValueError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{uid} not searchable after {limit} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--films", type=int, default=80, help="films for the ingest comparison")
    p.add_argument("--watched", type=int, default=21, help="films stored one by one (first warms)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--every", type=float, default=0.5, help="sync --watch SECONDS")
    args = p.parse_args()
    missing = available()
    if missing:
        print(f"bench_pacs: skipped: {missing}")
        return 1
    flags = [*TINY, "--workers", str(args.workers), "--batch-size", "16", "--no-progress"]
    with tempfile.TemporaryDirectory(prefix="bench-pacs-") as tmp:
        work = Path(tmp)
        films = write_films(sample_rows(args.films + args.watched), work / "films")
        server = Orthanc(work / "orthanc").start()
        try:
            server.store(films[: args.films])
            ingest(server, films[: args.films], work, flags)
            watch(
                server,
                films[args.films :],
                work,
                [*TINY, "--workers", "0", "--no-progress"],
                args.every,
            )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
