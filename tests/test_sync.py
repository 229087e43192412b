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
from dinosearch.features.folder import load_features
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


def _sync_argv(orthanc: Orthanc, root: Path) -> list[str]:
    folders = ["--features", str(root / "features"), "--index", str(root / "raw")]
    return ["sync", "--archive", orthanc.dicomweb, *folders, *TINY_SYNC, *RUNTIME]


def _archive_ids(orthanc: Orthanc) -> list[str]:
    from dinosearch.inputs.dicomweb import load_archive_records

    return sorted(load_archive_records(orthanc.dicomweb)[0]["id"])


def test_two_syncs_of_one_features_folder_at_once_both_finish_and_agree(
    orthanc: Orthanc, tmp_path: Path, tiny_backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second pass waits for the first (its own lock) instead of deleting its half-made batch."""
    import time

    from forking import finish, start

    import dinosearch.sync.archive as archive

    monkeypatch.setenv("DINOSEARCH_CACHE", str(tmp_path / "cache"))
    embed_new = archive._embed_new

    def slow_embed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        made = embed_new(*args, **kwargs)
        time.sleep(1.5)  # the other pass starts meanwhile: its tidying must not take this batch
        return made

    orthanc.store(write_films(sample_rows(6, start=300), tmp_path / "films", start=300))
    assert main(_sync_argv(orthanc, tmp_path)) == 0
    orthanc.store(write_films(sample_rows(8, start=306), tmp_path / "films", start=306))
    monkeypatch.setattr(archive, "_embed_new", slow_embed)
    children = []
    for _ in range(2):
        children.append(start(lambda: main(_sync_argv(orthanc, tmp_path))))
        time.sleep(0.5)
    outcomes = [finish(child, timeout=120) for child in children]
    assert [(o.status, o.value) for o in outcomes] == [("ok", 0), ("ok", 0)], outcomes
    ids = load_features(tmp_path / "features").metadata["id"].astype(str).tolist()
    assert sorted(ids) == _archive_ids(orthanc) and len(ids) == 14  # each film once
    assert sorted(open_index(tmp_path / "raw").metadata["id"].astype(str)) == sorted(ids)
    litter = [p.name for p in tmp_path.iterdir() if p.name.startswith(("features.", ".features."))]
    assert [n for n in litter if not n.endswith((".lock", ".lock.holder"))] == []


def test_a_removal_that_lands_while_sync_embeds_is_not_undone_by_its_merge(
    orthanc: Orthanc, tmp_path: Path, tiny_backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`remove` finishes between sync's listing and its merge: the merge reads the folder again
    under its lock, so the removed rows do not come back from sync's stale copy."""
    import dinosearch.sync.archive as archive
    from dinosearch.sync.erase import forget

    monkeypatch.setenv("DINOSEARCH_CACHE", str(tmp_path / "cache"))
    first = sample_rows(6, start=100)
    orthanc.store(write_films(first, tmp_path / "films", start=100))
    assert main(_sync_argv(orthanc, tmp_path)) == 0
    before = load_features(tmp_path / "features").metadata["id"].astype(str).tolist()
    gone = before[:2]
    embed_new = archive._embed_new

    def embed_then_remove(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        made = embed_new(*args, **kwargs)
        forget([tmp_path / "raw"], gone, features_dirs=[tmp_path / "features"])
        return made

    monkeypatch.setattr(archive, "_embed_new", embed_then_remove)
    orthanc.store(write_films(sample_rows(3, start=106), tmp_path / "films", start=106))
    assert main(_sync_argv(orthanc, tmp_path)) == 0
    ids = load_features(tmp_path / "features").metadata["id"].astype(str).tolist()
    assert not set(ids) & set(gone) and len(ids) == len(set(ids)) == 7
    assert sorted(open_index(tmp_path / "raw").metadata["id"].astype(str)) == sorted(ids)
