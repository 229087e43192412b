"""`dinosearch remove`: erased rows leave no bytes behind (features, cache, every index version), the
index stays consistent with its rewritten features, and readers during a removal never fail or mix."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
from helpers import clustered_vectors, write_features_folder

import dinosearch.index.handle as handle_module
from dinosearch.adapt.vectors import to_vectors
from dinosearch.cli import main as cli
from dinosearch.core.storage import write_json
from dinosearch.features.folder import load_features
from dinosearch.index import build_index, list_versions, open_index
from dinosearch.index.handle import iter_sources
from dinosearch.search import VectorSearcher

N, DIM = 120, 32
REMOVED = ["img0005", "img0028", "img0029", "img0030", "img0031", "img0110"]  # patient-007 = 28-31
KINDS = {
    "flat": ("flat", {}),
    "ivf-flat": ("ivf-flat", {"nlist": 4, "nprobe": 4}),
    "ivf-pq+refine": ("ivf-pq", {"nlist": 4, "nprobe": 4, "m": 8, "nbits": 4, "refine": "flat"}),
    "ivf-pq": ("ivf-pq", {"nlist": 4, "nprobe": 4, "m": 8, "nbits": 4, "refine": "none"}),
    "hnsw": ("hnsw", {}),
}


def metadata(n: int = N) -> dict[str, list]:
    return {
        "id": [f"img{i:04d}" for i in range(n)],
        "path": [f"/films/img{i:04d}.png" for i in range(n)],
        "patient_id": [f"patient-{i // 4:03d}" for i in range(n)],
    }


def make(work: Path, info: dict, kind: str, params: dict) -> tuple[Path, np.ndarray]:
    """Features A (rows 0-99) and B (all 120); an index of 3 versions: A, A again, B appended."""
    feats = clustered_vectors(N, DIM, clusters=10, seed=1) * 3.0
    meta = metadata()
    write_features_folder(work / "A", feats[:100], {k: v[:100] for k, v in meta.items()}, info)
    write_features_folder(work / "B", feats, meta, info)
    idx = work / "idx"
    for _ in range(2):
        build_index(work / "A", idx, index_type=kind, params=params)  # type: ignore[arg-type]
    build_index(work / "B", idx, append=True, skip_existing=True)
    return idx, feats


def stored(index_dir: Path) -> list[np.ndarray]:
    """Every (N, D) array the live index stores, decoded (candidates' index, re-ranking copy)."""
    index = open_index(index_dir).index
    parts = (
        [faiss.downcast_index(index.base_index), faiss.downcast_index(index.refine_index)]
        if isinstance(index, faiss.IndexRefine)
        else [index]
    )
    out = []
    for part in parts:
        if isinstance(part, faiss.IndexIVF):
            part.make_direct_map()
        out.append(part.reconstruct_n(0, part.ntotal))
    return out


def scan(folder: Path, needles: list[bytes]) -> list[str]:
    """Files under ``folder`` (hidden ones and all versions included) holding any needle."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [
                f"{path.relative_to(folder)}: needle {i}"
                for i, n in enumerate(needles)
                if n in data
            ]
    return found


def needles_of(feats: np.ndarray, rows: list[int], index_dir: Path, kind: str) -> list[bytes]:
    out = [s.encode() for i in rows for s in (f"img{i:04d}", f"/films/img{i:04d}.png")]
    out.append(b"patient-007")
    out += [feats[i].astype(np.float32).tobytes() for i in rows]
    out += [to_vectors(feats[rows].astype(np.float32), None)[j].tobytes() for j in range(len(rows))]
    if kind != "ivf-pq":  # every other type stores exact float32 vectors somewhere
        out += [part[i].tobytes() for part in stored(index_dir)[-1:] for i in rows]
    return out


def fake_cache(cache: Path, info: dict, feats: np.ndarray) -> None:
    """A clean-view cache entry of the tiny backbone (holding the rows) and one of another backbone."""
    other = clustered_vectors(N, DIM, seed=9)  # another backbone's features of other films
    for name, backbone, rows in (
        ("tiny-clean-abc", info["fingerprint"], feats),
        ("other-clean-def", "other|x", other),
    ):
        (cache / name).mkdir(parents=True)
        np.save(cache / name / "features.npy", rows[:, None, :].astype(np.float32))
        write_json(cache / name / "key.json", {"backbone": backbone, "images": "x"})


@pytest.mark.parametrize("name", list(KINDS))
def test_remove_erases_every_copy_and_keeps_the_index_consistent(
    name: str, tiny_backbone, tmp_path: Path
) -> None:
    kind, params = KINDS[name]
    info = tiny_backbone.info()
    work, cache = tmp_path / "work", tmp_path / "work" / "cache"
    idx, feats = make(work, info, kind, params)
    fake_cache(cache, info, feats)
    rows = [int(r[3:]) for r in REMOVED]
    needles = needles_of(feats, rows, idx, kind)
    assert len(scan(work, needles)) >= 10  # the scan finds them before: it can fail
    keep = np.setdiff1d(np.arange(N), rows)
    before = [part[keep] for part in stored(idx)]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(REMOVED) + "\n\n")

    assert (
        cli(["remove", "--index", str(idx), "--ids", str(ids_file), "--cache-dir", str(cache)]) == 0
    )

    assert scan(work, needles) == []
    assert sorted(p.name for p in cache.iterdir()) == ["other-clean-def"]
    assert list_versions(idx) == ["v000004"]
    h = open_index(idx)
    assert h.metadata["id"].tolist() == [f"img{i:04d}" for i in keep]
    for was, now in zip(before, stored(idx), strict=True):
        np.testing.assert_array_equal(now, was)  # the kept rows' codes, untouched and renumbered
    # the features the manifest names, read with their checksums (what evaluation does)
    sources = list(iter_sources(h.manifest))
    assert [i for _, _, ids in sources for i in ids] == h.metadata["id"].tolist()
    np.testing.assert_allclose(np.concatenate([f for _, f, _ in sources]), feats[keep], rtol=0)
    assert len(load_features(work / "A", verify=True).features) == 95
    searcher = VectorSearcher(idx)
    unit = to_vectors(feats.astype(np.float32), None)
    for result in searcher.search_vectors(unit[rows], 30):
        assert not set(result.rows["id"]) & set(REMOVED)
    if name != "ivf-pq":  # exact or exactly re-ranked: each kept film finds itself first
        top = [r.rows["id"].iloc[0] for r in searcher.search_vectors(unit[keep], 1)]
        assert top == h.metadata["id"].tolist()
    # a second run finds nothing to do; appending the re-embedded full set restores the rows
    assert (
        cli(["remove", "--index", str(idx), "--ids", str(ids_file), "--cache-dir", str(cache)]) == 0
    )
    assert list_versions(idx) == ["v000004"]
    write_features_folder(work / "C", feats, metadata(), info)
    index_cli = ["index", "--features", str(work / "C"), "--out", str(idx), "--append"]
    assert cli([*index_cli, "--skip-existing"]) == 0
    assert open_index(idx).count == N
    assert sorted(open_index(idx).metadata["id"]) == metadata()["id"]


def test_remove_where_covers_every_index_of_shared_features(
    tiny_backbone, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = tiny_backbone.info()
    raw, feats = make(tmp_path, info, "flat", {})
    hnsw = tmp_path / "hnsw"
    build_index(tmp_path / "B", hnsw, index_type="hnsw")
    where = "patient_id == 'patient-007'"
    cache = tmp_path / "cache"
    argv = ["remove", "--index", str(raw), "--index", str(hnsw), "--where", where]
    assert cli([*argv, "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "asked to remove 4 ids" in out and "rebuilt from its stored vectors" in out
    for index_dir in (raw, hnsw):
        assert not open_index(index_dir).metadata["patient_id"].eq("patient-007").any()
    assert scan(tmp_path, [b"patient-007", feats[29].astype(np.float32).tobytes()]) == []
    assert len(load_features(tmp_path / "B", verify=True).features) == N - 4


def test_remove_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["remove", "--index", str(tmp_path), "--ids", "a", "--where", "x == 1"]) == 2
    assert "exactly one of --ids FILE or --where" in capsys.readouterr().err
    assert cli(["remove", "--index", str(tmp_path), "--ids", str(tmp_path / "none.txt")]) == 2
    assert "none.txt: no such file" in capsys.readouterr().err


def test_readers_during_removal_answer_from_one_version_and_never_after(
    tiny_backbone, tmp_path: Path
) -> None:
    """Threads refresh and search in a bounded loop while `remove` runs: every answer is the old or
    the new version's, nothing fails, and every query after the removal lacks the removed ids."""
    idx, feats = make(tmp_path, tiny_backbone.info(), "hnsw", {})
    unit = to_vectors(feats.astype(np.float32), None)
    queries = unit[[28, 29, 110, 3, 50]]

    def answer(searcher: VectorSearcher) -> list[list[str]]:
        return [r.rows["id"].tolist() for r in searcher.search_vectors(queries, 8)]

    old = answer(VectorSearcher(idx))
    done, log, failures = threading.Event(), [], []

    def read() -> None:
        searcher, deadline = VectorSearcher(idx), time.monotonic() + 60
        while time.monotonic() < deadline and len(log) < 5000:
            finished = done.is_set()
            try:
                searcher.refresh()
                log.append((finished, searcher.handle.version, answer(searcher)))
            except Exception as e:  # any failure is a finding
                failures.append(repr(e))
            if finished:
                return
            time.sleep(0.001)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    time.sleep(0.05)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(REMOVED))
    assert (
        cli(
            [
                "remove",
                "--index",
                str(idx),
                "--ids",
                str(ids_file),
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    done.set()
    for t in readers:
        t.join(90)
    new = answer(VectorSearcher(idx))
    assert not failures, failures[:3]
    assert any(f for f, _, _ in log)
    for finished, _, got in log:
        assert got in (old, new)
        if finished:
            assert got == new and not {i for ids in got for i in ids} & set(REMOVED)


def test_open_index_retries_a_version_deleted_while_it_is_read(
    tmp_path: Path, tiny_backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a version pruned between the manifest check and faiss's read was a ValueError."""
    idx, _ = make(tmp_path, tiny_backbone.info(), "flat", {})
    real = faiss.read_index
    calls: list[Any] = []

    def read_then_prune(path: str, *args: Any) -> faiss.Index:
        if not calls:  # another writer publishes and deletes this version meanwhile
            calls.append(path)
            build_index(tmp_path / "B", idx, keep=1)
        return real(path, *args)

    monkeypatch.setattr(handle_module.faiss, "read_index", read_then_prune)
    assert open_index(idx).version == "v000004"
    assert calls
