"""Indexes beyond memory: re-ranked IVF-PQ chosen by budget, filled chunk by chunk; --skip-existing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import (
    clustered_vectors,
    precision_at,
    save_untrained_adapter,
    write_features_folder,
)

import dinosearch.index.build as build_module
from dinosearch.adapt.adapter import load_adapter
from dinosearch.adapt.vectors import to_vectors
from dinosearch.cli import main
from dinosearch.evaluate import evaluate_indexes
from dinosearch.index import build_index, choose_index, estimate_bytes, exact_search, open_index
from dinosearch.search import VectorSearcher


def _folder(tmp_path: Path, name: str, feats: np.ndarray, ids: range, backbone) -> Path:  # type: ignore[no-untyped-def]
    meta = {"id": [f"x{i}" for i in ids], "path": [f"/x/{i}.png" for i in ids]}
    return write_features_folder(tmp_path / name, feats, meta, backbone.info())


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))


def test_the_budget_picks_the_reranking_copy() -> None:
    kind, p = choose_index(5_000_000, 384, memory_budget_gb=4)
    assert kind == "ivf-pq" and p["refine"] == "sq8" and p["k_factor"] == 32
    assert estimate_bytes(kind, 5_000_000, 384, p) < 4 * 2**30 / 1.1
    assert choose_index(1_000_000, 384, memory_budget_gb=1)[1]["refine"] == "fp16"
    assert choose_index(5_000_000, 384, memory_budget_gb=0.5)[1]["refine"] == "none"
    assert choose_index(5_000_000, 384, "ivf-pq", params={"refine": "flat"})[1]["refine"] == "flat"
    with pytest.raises(ValueError, match="--pq-m 7 must divide"):
        choose_index(1000, 384, "ivf-pq", params={"m": 7})
    with pytest.raises(ValueError, match="--refine 'fp8'"):
        choose_index(1000, 384, "ivf-pq", params={"refine": "fp8"})


@pytest.mark.parametrize("refine", ["sq8", "fp16"])
def test_reranked_ivf_pq_filled_in_chunks_keeps_its_recall(
    tmp_path: Path, tiny_backbone, monkeypatch: pytest.MonkeyPatch, refine: str
) -> None:
    monkeypatch.setattr(build_module, "CHUNK", 333)  # 4000 vectors in 13 ragged chunks
    feats = clustered_vectors(4000, 32, clusters=100, seed=3)
    folder = _folder(tmp_path, "f", feats, range(4000), tiny_backbone)
    params = {"refine": refine, "m": 8, "nprobe": 16}
    handle = build_index(folder, tmp_path / "idx", index_type="ivf-pq", params=params)
    queries = to_vectors(clustered_vectors(100, 32, clusters=100, seed=4))
    _, truth = exact_search(to_vectors(feats), queries, 10)
    scores, found = handle.search(queries, 10)
    assert _recall(found, truth) >= 0.95, handle.manifest["params"]
    reopened = open_index(tmp_path / "idx")
    np.testing.assert_array_equal(reopened.search(queries, 10)[1], found)
    assert reopened.metadata["id"].tolist() == [f"x{i}" for i in range(4000)]
    reopened.set_search_params(nprobe=1, k_factor=1)  # a cheaper search finds less
    assert _recall(reopened.search(queries, 10)[1], truth) < _recall(found, truth)
    with pytest.raises(ValueError, match="unknown search parameters"):
        reopened.set_search_params(nlist=3)


def test_append_skip_existing_adds_only_new_ids(tmp_path: Path, tiny_backbone) -> None:
    feats = clustered_vectors(400, 32, seed=5)
    first = _folder(tmp_path, "a", feats[:300], range(300), tiny_backbone)
    overlap = _folder(tmp_path, "b", feats[200:], range(200, 400), tiny_backbone)
    params = {"nlist": 4, "m": 8, "refine": "fp16"}
    build_index(first, tmp_path / "idx", index_type="ivf-pq", params=params)
    with pytest.raises(ValueError, match="100 ids are already in.*--skip-existing"):
        build_index(overlap, tmp_path / "idx", append=True)
    handle = build_index(overlap, tmp_path / "idx", append=True, skip_existing=True)
    assert handle.count == 400 and handle.version == "v000002"
    assert handle.metadata["id"].tolist() == [f"x{i}" for i in range(400)]
    assert handle.manifest["appended"][0]["rows"] == [[100, 200]]
    assert handle.manifest["appended"][0]["added"] == 100
    # vectors() of a compressed index are recomputed from the features, skipped rows left out
    np.testing.assert_allclose(open_index(tmp_path / "idx").vectors(), to_vectors(feats), atol=1e-6)
    again = build_index(overlap, tmp_path / "idx", append=True, skip_existing=True)
    assert again.version == "v000002"  # nothing new: no new version


def test_cli_skip_existing(
    tmp_path: Path, tiny_backbone, capsys: pytest.CaptureFixture[str]
) -> None:
    feats = clustered_vectors(60, 32, seed=6)
    first = _folder(tmp_path, "a", feats[:40], range(40), tiny_backbone)
    overlap = _folder(tmp_path, "b", feats[30:], range(30, 60), tiny_backbone)
    out = str(tmp_path / "idx")
    assert main(["index", "--features", str(first), "--out", out]) == 0
    argv = ["index", "--features", str(overlap), "--out", out, "--append"]
    assert main([*argv, "--skip-existing"]) == 0
    assert "appended 20 new vectors" in capsys.readouterr().out
    assert main([*argv, "--skip-existing"]) == 0
    assert "appended 0 new vectors" in capsys.readouterr().out
    assert main(["index", "--features", str(first), "--out", out, "--skip-existing"]) == 2
    assert "only applies with --append" in capsys.readouterr().err


def test_evaluation_of_an_index_grown_with_skip_existing(tmp_path: Path, tiny_backbone) -> None:
    """The A/B report scores exactly the rows the indexes hold: the first folder, then only the
    new rows of the overlapping append, aligned with their labels (brute force agrees)."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(4, 32))
    labels = rng.integers(0, 4, 400)
    feats = (centres[labels] + 1.0 * rng.normal(size=(400, 32))).astype(np.float32)

    def folder(name: str, rows: range) -> Path:
        meta = {
            "id": [f"x{i}" for i in rows],
            "path": [f"/x/{i}.png" for i in rows],
            "label": [f"c{labels[i]}" for i in rows],
            "patient_id": [f"p{i // 2}" for i in rows],  # two films per patient
        }
        return write_features_folder(
            tmp_path / name, feats[rows.start : rows.stop], meta, tiny_backbone.info()
        )

    first, overlap = folder("a", range(0, 300)), folder("b", range(200, 400))
    adapter = tmp_path / "adapter"
    save_untrained_adapter(adapter, tiny_backbone)
    for out, net in (("raw", None), ("adapted", adapter)):
        build_index(first, tmp_path / out, adapter_dir=net, index_type="flat")
        build_index(overlap, tmp_path / out, adapter_dir=net, append=True, skip_existing=True)

    result = evaluate_indexes(
        tmp_path / "raw", tmp_path / "adapted", tmp_path / "report", n_boot=10, ks=[1, 5]
    ).metrics
    names = np.array([f"c{c}" for c in labels])
    groups = np.arange(400) // 2
    net = load_adapter(adapter)
    for method, vectors in (("raw", to_vectors(feats)), ("adapted", to_vectors(feats, net))):
        for k in (1, 5):
            want = precision_at(vectors, names, groups, k)
            assert result["overall"][method][f"precision@{k}"]["mean"] == pytest.approx(
                want, abs=1e-9
            )
    # a misaligned read (the 500 rows of both folders, or labels shifted by the overlap) scores lower
    assert precision_at(to_vectors(feats), names, groups, 1) > 0.9


def test_search_params_are_checked_and_survive_a_new_version(tmp_path: Path, tiny_backbone) -> None:
    feats = clustered_vectors(2000, 32, clusters=100, seed=8)
    folder = _folder(tmp_path, "f", feats, range(2000), tiny_backbone)
    params = {"nlist": 64, "m": 8, "refine": "fp16", "nprobe": 16}
    build_index(folder, tmp_path / "idx", index_type="ivf-pq", params=params)
    queries = to_vectors(clustered_vectors(100, 32, clusters=100, seed=9))
    _, truth = exact_search(to_vectors(feats), queries, 10)

    default = VectorSearcher(tmp_path / "idx")
    cheap = VectorSearcher(tmp_path / "idx", search_params={"nprobe": 1, "k_factor": 1})
    full = _recall(default.handle.search(queries, 10)[1], truth)
    low = _recall(cheap.handle.search(queries, 10)[1], truth)
    assert low < full and full >= 0.95
    build_index(folder, tmp_path / "idx", index_type="ivf-pq", params=params)  # v000002
    assert cheap.refresh() and cheap.handle.version == "v000002"
    assert cheap.handle.manifest["params"]["nprobe"] == 1  # still the caller's, not the build's
    assert _recall(cheap.handle.search(queries, 10)[1], truth) == low

    build_index(folder, tmp_path / "flat", index_type="flat")
    with pytest.raises(ValueError, match=r"nprobe does not apply to .*flat \(flat index\)"):
        VectorSearcher(tmp_path / "flat", search_params={"nprobe": 4})
    build_index(folder, tmp_path / "pq", index_type="ivf-pq", params={**params, "refine": "none"})
    with pytest.raises(ValueError, match="k_factor does not apply.*no re-ranking copy"):
        VectorSearcher(tmp_path / "pq", search_params={"k_factor": 4})
    with pytest.raises(ValueError, match="nprobe must be ≥ 1, not 0"):
        VectorSearcher(tmp_path / "idx", search_params={"nprobe": 0})
