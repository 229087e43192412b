"""build_index / open_index: round trip, row alignment, refusals, approximate vs exact, append, GPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest
from helpers import clustered_vectors, write_features_folder

from dinosearch.adapt.vectors import to_vectors
from dinosearch.features.folder import load_features
from dinosearch.index import build_index, choose_index, exact_search, open_index


def test_round_trip_identical_ids_and_scores(synthetic_features: Path, tmp_path: Path) -> None:
    built = build_index(synthetic_features, tmp_path / "idx")
    queries = to_vectors(load_features(synthetic_features).features[:20])
    s1, i1 = built.search(queries, 10)
    opened = open_index(tmp_path / "idx")
    s2, i2 = opened.search(queries, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    assert opened.version == built.version == "v000001"
    assert (tmp_path / "idx" / "current").read_text().strip() == "v000001"
    m = opened.manifest
    assert m["kind"] == "index" and m["metric"] == "inner_product" and m["normalized"] is True
    assert (
        m["index_type"] == "flat" and m["count"] == 300 and m["dim"] == 32 and m["adapter"] is None
    )
    assert m["backbone"]["load_args"]["name"] == "dinov2_tiny_test"
    assert Path(m["features"]["path"]).is_absolute()
    # the numpy exact path agrees with faiss's own flat search
    fs, fi = opened.index.search(queries, 10)
    np.testing.assert_allclose(fs, s1, atol=1e-5)
    assert (fi[:, 0] == i1[:, 0]).all()


def test_metadata_row_i_is_vector_i(synthetic_features: Path, tmp_path: Path) -> None:
    handle = build_index(synthetic_features, tmp_path / "idx")
    fs = load_features(synthetic_features)
    np.testing.assert_allclose(handle.vectors(), to_vectors(fs.features), atol=1e-6)
    assert handle.metadata["id"].tolist() == fs.metadata["id"].tolist()
    _, ids = handle.search(handle.vectors()[[5, 123, 299]], 1)
    assert handle.rows(ids[:, 0])["id"].tolist() == ["img0005", "img0123", "img0299"]


@pytest.mark.parametrize("name", ["index.faiss", "metadata.parquet"])
def test_corrupted_file_is_named(synthetic_features: Path, tmp_path: Path, name: str) -> None:
    handle = build_index(synthetic_features, tmp_path / "idx")
    path = handle.version_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=name) as e:
        open_index(tmp_path / "idx")
    assert str(path) in str(e.value)


def test_missing_and_inconsistent_files_are_named(synthetic_features: Path, tmp_path: Path) -> None:
    handle = build_index(synthetic_features, tmp_path / "idx")
    manifest = handle.version_dir / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "count": 299}))
    with pytest.raises(ValueError, match="index.faiss.*299"):
        open_index(tmp_path / "idx")
    (handle.version_dir / "metadata.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="metadata.parquet"):
        open_index(tmp_path / "idx")
    with pytest.raises(FileNotFoundError, match="no current file"):
        open_index(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("kind", "params", "floor"),
    [
        ("ivf-flat", {}, 0.85),
        ("ivf-pq", {"nbits": 6}, 0.85),
        ("hnsw", {}, 0.9),
    ],  # ivf-pq: re-ranked
)
def test_approximate_against_exact(
    tmp_path: Path, tiny_backbone, kind: str, params: dict, floor: float
) -> None:
    n = 4000
    feats = clustered_vectors(n, 32, clusters=100, seed=3)
    meta = {"id": [f"x{i}" for i in range(n)], "path": [f"/x/{i}" for i in range(n)]}
    folder = write_features_folder(tmp_path / "f", feats, meta, tiny_backbone.info())
    approx = build_index(folder, tmp_path / kind, index_type=kind, params=params)  # type: ignore[arg-type]
    queries = clustered_vectors(200, 32, clusters=100, seed=3)[::2] + 0.01
    queries = to_vectors(queries)
    _, truth = exact_search(to_vectors(feats), queries, 10)
    _, found = approx.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    print(f"{kind} {approx.manifest['params']}: recall@10 = {recall:.3f}")
    assert recall >= floor
    reopened = open_index(tmp_path / kind)
    np.testing.assert_array_equal(reopened.search(queries, 10)[1], found)
    # vectors(): read back (ivf-flat, hnsw) or recomputed from the features (ivf-pq)
    np.testing.assert_allclose(reopened.vectors(), to_vectors(feats), atol=1e-5)


def test_auto_choice() -> None:
    assert choose_index(10_000, 384)[0] == "flat"
    assert choose_index(1_000_000, 384, memory_budget_gb=8)[0] == "ivf-flat"
    kind, params = choose_index(1_000_000, 384, memory_budget_gb=1)
    assert kind == "ivf-pq" and 384 % params["m"] == 0
    assert choose_index(100, 32, "hnsw", params={"ef_search": 16})[1]["ef_search"] == 16
    with pytest.raises(ValueError, match="index type 'annoy'"):
        build_index("x", "y", index_type="annoy")  # type: ignore[arg-type]


def test_append_adds_a_version_and_refuses_duplicates(
    synthetic_features: Path, tmp_path: Path, tiny_backbone
) -> None:
    build_index(synthetic_features, tmp_path / "idx")
    new = clustered_vectors(7, 32, seed=9)
    meta = {
        "id": [f"new{i}" for i in range(7)],
        "path": [f"/new/{i}.png" for i in range(7)],
        "view": ["PA"] * 7,
    }
    folder = write_features_folder(tmp_path / "new", new, meta, tiny_backbone.info())
    handle = build_index(folder, tmp_path / "idx", append=True)
    assert handle.version == "v000002" and handle.count == 307
    opened = open_index(tmp_path / "idx")
    assert (
        opened.metadata["id"].tolist()[-7:] == meta["id"]
        and opened.metadata["id"].iloc[0] == "img0000"
    )
    assert opened.metadata["label"].isna().iloc[-1]  # columns the new images lack are null
    _, ids = opened.search(to_vectors(new), 1)
    assert ids[:, 0].tolist() == list(range(300, 307))
    assert len(opened.manifest["appended"]) == 1
    with pytest.raises(ValueError, match="already in"):
        build_index(folder, tmp_path / "idx", append=True)
    other = dict(tiny_backbone.info(), fingerprint="dinov2_tiny_test|random(seed=7)|56px|cls")
    meta2 = {**meta, "id": [f"other{i}" for i in range(7)]}
    folder2 = write_features_folder(tmp_path / "other", new, meta2, other)
    with pytest.raises(ValueError, match="backbone"):
        build_index(folder2, tmp_path / "idx", append=True)
    assert open_index(tmp_path / "idx").version == "v000002"


def test_adapted_index(synthetic_features: Path, tmp_path: Path, tiny_backbone) -> None:
    from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter, save_adapter

    adapter = DomainAdapter(AdapterConfig(in_dim=32, bottleneck=16))
    save_adapter(
        adapter,
        tmp_path / "adapter",
        backbone_fingerprint=tiny_backbone.fingerprint,
        train_config={},
        data={},
        metrics={},
    )
    handle = build_index(synthetic_features, tmp_path / "idx", adapter_dir=tmp_path / "adapter")
    info = handle.manifest["adapter"]
    assert info["fingerprint"] == adapter.fingerprint and Path(info["path"]).is_absolute()
    assert handle.fingerprint.endswith("+" + adapter.fingerprint)
    expected = to_vectors(load_features(synthetic_features).features, adapter)
    np.testing.assert_allclose(open_index(tmp_path / "idx").vectors(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="adapter"):  # appending raw vectors to an adapted index
        build_index(synthetic_features, tmp_path / "idx", append=True)
    wrong = tmp_path / "wrong"
    save_adapter(
        adapter,
        wrong,
        backbone_fingerprint="other|random(seed=0)|56px|cls",
        train_config={},
        data={},
        metrics={},
    )
    with pytest.raises(ValueError, match="other"):
        build_index(synthetic_features, tmp_path / "idx2", adapter_dir=wrong)


def test_gpu_requested_without_gpu_is_refused(synthetic_features: Path, tmp_path: Path) -> None:
    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no GPU"):
        build_index(synthetic_features, tmp_path / "idx", use_gpu=True)


@pytest.mark.gpu
@pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="faiss sees no GPU (faiss-cpu or no CUDA)")
def test_gpu_build_matches_cpu(synthetic_features: Path, tmp_path: Path) -> None:
    cpu = build_index(synthetic_features, tmp_path / "cpu", use_gpu=False)
    gpu = build_index(synthetic_features, tmp_path / "gpu", use_gpu=True)
    assert gpu.manifest["built_on"] == "gpu" and cpu.manifest["built_on"] == "cpu"
    queries = cpu.vectors()[:50]
    np.testing.assert_array_equal(
        open_index(tmp_path / "gpu").search(queries, 10)[1], cpu.search(queries, 10)[1]
    )
    shutil.rmtree(tmp_path / "gpu")
