"""Kill suite, `dinosearch sync`: SIGKILLed at sampled renames and deletion steps and at random
instants while it adds 4 films and removes a patient; every next run must complete, nothing corrupt.

Needs Orthanc (tests/orthanc.py); the server runs in the driver, the syncs in forked children.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from archive_films import sample_rows, write_films
from helpers import TINY_CLI
from kill_driver import Tally, kill_and_check, leftovers
from orthanc import Orthanc

from dinosearch.cli import main as cli
from dinosearch.features.folder import load_features
from dinosearch.index import open_index

TRAPPED = 26  # rename/delete points sampled (of ~90); some land after a shorter run ends


def sync_scenario(work: Path, rng: random.Random) -> dict[str, Any]:
    tally = Tally()
    os.environ["DINOSEARCH_CACHE"] = str(work / "cache")  # erasure clears view caches
    server = Orthanc(work / "orthanc").start()
    try:
        _kills(tally, work, server, rng)
    finally:
        server.stop()
    return tally.summary()


def _kills(tally: Tally, work: Path, server: Orthanc, rng: random.Random) -> None:
    first, later = sample_rows(6, start=250), sample_rows(4, start=256)
    server.store(write_films(first, work / "films", start=250))
    flags = [*TINY_CLI, "--shard-size", "2", "--batch-size", "2", "--workers", "0", "--no-progress"]

    def sync(root: Path) -> int:
        folders = ["--features", str(root / "features"), "--index", str(root / "raw")]
        return cli(["sync", "--archive", server.dicomweb, *folders, *flags])

    template, run = work / "template", work / "run"
    assert sync(template) == 0  # in this process, so that children import nothing lazily
    old = _ids(template)
    server.store(write_films(later, work / "films", start=256))
    server.delete_patient(str(first["patient_id"][0]))
    assert sync(work / "reference") == 0
    new = _ids(work / "reference")

    def reset() -> None:
        import shutil

        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(template, run, symlinks=True)

    def check() -> tuple[Any, int, Any, list[str]]:
        now = _ids(run)
        open_index(run / "raw")  # the live version opens, whichever it is
        status = sync(run)
        litter = leftovers(run, "features") + leftovers(run, "raw")
        litter += [p.name for p in run.iterdir() if p.name.startswith("features.")]
        litter = [p for p in litter if not p.endswith((".lock", ".lock.holder"))]  # kept on purpose
        return now, status, (_ids(run), _index_ids(run)), litter

    erased = tuple(sorted(set(old) & set(new)))  # killed after the erasure, before the additions
    kill_and_check(
        tally, "sync", lambda: sync(run), reset, check, [old, erased, new], (new, new), rng,
        trapped=TRAPPED,
    )  # fmt: skip


def _ids(root: Path) -> tuple[str, ...]:
    return tuple(sorted(load_features(root / "features").metadata["id"].astype(str)))


def _index_ids(root: Path) -> tuple[str, ...]:
    return tuple(sorted(open_index(root / "raw").metadata["id"].astype(str)))
