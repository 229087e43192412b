"""`dinosearch sync` against a real Orthanc: films stored and patients deleted reach both indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from archive_films import sample_rows, write_films
from helpers import TINY, TINY_SIZE, save_untrained_adapter
from orthanc import Orthanc, available

from dinosearch.cli import main
from dinosearch.index import build_index, open_index
from dinosearch.sync.archive import sync_once
from dinosearch.sync.config import SyncConfig

TINY_SYNC = ["--backbone", TINY, "--weights", "random", "--image-size", str(TINY_SIZE)]
RUNTIME = ["--workers", "0", "--batch-size", "8", "--no-progress"]


@pytest.fixture()
def orthanc(tmp_path: Path):
    missing = available()
    if missing:
        pytest.skip(missing)
    server = Orthanc(tmp_path / "orthanc").start()
    yield server
    server.stop()


def _vectors(index_dir: Path) -> dict[str, np.ndarray]:
    """{id: stored vector} of an index's live version."""
    handle = open_index(index_dir)
    vectors = handle.index.reconstruct_n(0, handle.index.ntotal)
    return dict(zip(handle.metadata["id"].astype(str), vectors, strict=True))


def test_sync_adds_new_films_removes_deleted_patients_and_is_idempotent(
    orthanc: Orthanc,
    tmp_path: Path,
    tiny_backbone,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DINOSEARCH_CACHE", str(tmp_path / "cache"))  # erasure clears view caches
    first, later = sample_rows(10, start=200), sample_rows(20, start=210)
    orthanc.store(write_films(first, tmp_path / "films", start=200))
    save_untrained_adapter(tmp_path / "adapter", tiny_backbone)
    argv = [
        "sync", "--archive", orthanc.dicomweb, "--features", str(tmp_path / "features"),
        "--index", str(tmp_path / "raw"), "--adapted-index", str(tmp_path / "adapted"),
        "--adapter", str(tmp_path / "adapter"), *TINY_SYNC, *RUNTIME,
    ]  # fmt: skip
    assert main(argv) == 0
    assert "10 added, 0 removed" in capsys.readouterr().out
    orthanc.store(write_films(later, tmp_path / "films", start=210))
    gone = list(dict.fromkeys(first["patient_id"]))[:2]
    for patient in gone:
        orthanc.delete_patient(patient)
    assert main(argv) == 0
    out = capsys.readouterr().out
    removed = int((first["patient_id"].isin(gone)).sum())
    assert f"20 added, {removed} removed" in out and "raw → v" in out and "adapted → v" in out
    # what the archive holds now, embedded and indexed from scratch
    fresh = tmp_path / "fresh"
    embed = ["embed", "--images", orthanc.dicomweb, "--out", str(fresh), *TINY_SYNC, *RUNTIME]
    assert main(embed) == 0
    for name, adapter in (("raw", None), ("adapted", tmp_path / "adapter")):
        build_index(fresh, tmp_path / f"fresh-{name}", adapter_dir=adapter)
        synced, rebuilt = _vectors(tmp_path / name), _vectors(tmp_path / f"fresh-{name}")
        assert set(synced) == set(rebuilt) and len(synced) == 30 - removed
        for rid, vector in rebuilt.items():
            np.testing.assert_allclose(synced[rid], vector, rtol=1e-4, atol=1e-5)
    versions = {n: open_index(tmp_path / n).version for n in ("raw", "adapted")}
    config = SyncConfig(
        archive=orthanc.dicomweb, features=str(tmp_path / "features"), index=str(tmp_path / "raw"),
        adapted_index=str(tmp_path / "adapted"), adapter=str(tmp_path / "adapter"),
        backbone=TINY, weights="random", image_size=TINY_SIZE, workers=0, progress=False,
    )  # fmt: skip
    again = sync_once(config)
    assert again.added == [] and again.removed == [] and again.published == {}
    assert {n: open_index(tmp_path / n).version for n in ("raw", "adapted")} == versions
    # erased: no version of either index, and not the features folder, holds a removed film
    gone_uids = set(_archive_ids_before(first, gone))
    assert len(gone_uids) == removed
    for name in ("raw", "adapted"):
        for version in (tmp_path / name / "versions").iterdir():
            meta = pd.read_parquet(version / "metadata.parquet")
            assert not set(meta["id"]) & gone_uids, version
    assert not set(pd.read_parquet(tmp_path / "features" / "metadata.parquet")["id"]) & gone_uids


def _archive_ids_before(rows: pd.DataFrame, gone: list[str]) -> list[str]:
    """SOP Instance UIDs of the films of patients ``gone`` (as archive_films made them)."""
    from archive_films import film

    return [
        str(film(row, 200 + i).SOPInstanceUID)
        for i, row in rows.iterrows()
        if row["patient_id"] in gone
    ]
