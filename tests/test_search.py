"""Searcher: image and vector queries, shared backbone, filters, group exclusion, refusals, refresh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import assert_ranked, brute_force_ranking, save_untrained_adapter, unit
from PIL import Image

from dinosearch.adapt.vectors import to_vectors
from dinosearch.backbones import load_backbone
from dinosearch.features.folder import load_features
from dinosearch.index import build_index, exact_search
from dinosearch.search import Searcher, parse_filters


@pytest.fixture()
def tiny_index(tiny_features: Path, tmp_path: Path) -> Path:
    build_index(tiny_features, tmp_path / "idx")
    return tmp_path / "idx"


def test_image_query_finds_itself_from_path_bytes_and_pil(
    tiny_index: Path, tiny_features: Path, tiny_backbone
) -> None:
    searcher = Searcher(tiny_index, backbone=tiny_backbone)
    path = searcher.metadata["path"].iloc[4]
    by_path = searcher.search_image(path, k=3)
    by_bytes = searcher.search_image(Path(path).read_bytes(), k=3)
    by_pil = searcher.search_image(Image.open(path), k=3)
    # the query is embedded exactly as `embed` embedded the indexed image, and ranked as brute force
    # over the stored features ranks it (the tiny backbone's images differ by cosine 1e-4 to 3e-2)
    np.testing.assert_allclose(searcher.embed_image(path), searcher.handle.vectors()[4], atol=1e-5)
    stored = unit(load_features(tiny_features).features)
    want, want_scores = brute_force_ranking(stored, stored[4])
    assert want[0] == 4 and want_scores[0] - want_scores[1] > 1e-4
    assert_ranked(by_path.ids, by_path.scores, want[:3])
    np.testing.assert_allclose(by_path.scores, want_scores[:3], atol=1e-5)
    np.testing.assert_array_equal(by_path.ids, by_bytes.ids)
    np.testing.assert_array_equal(by_path.ids, by_pil.ids)
    assert list(by_path.rows.columns[:5]) == ["rank", "score", "id", "path", "label"]
    assert {"view", "patient_id", "age"} <= set(by_path.rows.columns)


def test_one_backbone_serves_raw_and_adapted(
    tiny_features: Path, tiny_backbone, tmp_path: Path
) -> None:
    save_untrained_adapter(tmp_path / "adapter", tiny_backbone)
    build_index(tiny_features, tmp_path / "raw")
    build_index(tiny_features, tmp_path / "adapted", adapter_dir=tmp_path / "adapter")
    raw = Searcher(tmp_path / "raw", backbone=tiny_backbone)
    adapted = Searcher(tmp_path / "adapted", backbone=tiny_backbone)
    assert raw.backbone is adapted.backbone and raw.adapter is None and adapted.adapter is not None
    path = raw.metadata["path"].iloc[0]
    features = raw.image_features([path])  # ONE backbone forward for both searches
    r = raw.search_vectors(raw.embed_features(features), 5, fingerprint=raw.fingerprint)[0]
    a = adapted.search_vectors(
        adapted.embed_features(features), 5, fingerprint=adapted.fingerprint
    )[0]
    np.testing.assert_array_equal(r.ids, raw.search_image(path, 5).ids)
    np.testing.assert_array_equal(a.ids, adapted.search_image(path, 5).ids)
    np.testing.assert_allclose(
        adapted.embed_image(path), to_vectors(features, adapted.adapter)[0], atol=1e-6
    )
    stored = load_features(tiny_features).features
    for result, vectors in ((r, to_vectors(stored)), (a, to_vectors(stored, adapted.adapter))):
        want, _ = brute_force_ranking(vectors, vectors[0])
        assert_ranked(result.ids, result.scores, want[:5])
    with pytest.raises(ValueError, match="made by"):
        adapted.search_vectors(raw.embed_features(features), 5, fingerprint=raw.fingerprint)


def test_refuses_other_backbone_and_wrong_dim(tiny_index: Path) -> None:
    other = load_backbone("dinov2_tiny_test", "random", image_size=56, seed=1)
    with pytest.raises(ValueError, match="manifest.json"):
        Searcher(tiny_index, backbone=other)
    searcher = Searcher(tiny_index)  # rebuilt from the manifest's load_args
    with pytest.raises(ValueError, match="32-d"):
        searcher.search_vectors(np.ones((2, 16), np.float32))


def test_batch_matches_brute_force(synthetic_features: Path, tmp_path: Path, tiny_backbone) -> None:
    build_index(synthetic_features, tmp_path / "idx")
    searcher = Searcher(tmp_path / "idx", backbone=tiny_backbone)
    vectors = to_vectors(load_features(synthetic_features).features)
    results = searcher.search_vectors(vectors[:8], 10)
    brute = np.argsort(-(vectors[:8] @ vectors.T), axis=1, kind="stable")[:, :10]
    for res, truth in zip(results, brute, strict=True):
        assert set(res.ids) == set(truth)
        assert res.rows["rank"].tolist() == list(range(1, 11))
        np.testing.assert_allclose(res.rows["score"], res.scores)


def test_filters_and_group_exclusion(
    synthetic_features: Path, tmp_path: Path, tiny_backbone
) -> None:
    build_index(synthetic_features, tmp_path / "idx")
    searcher = Searcher(tmp_path / "idx", backbone=tiny_backbone)
    meta = searcher.metadata
    q = searcher.handle.vectors()[:4]
    for f in ({"view": "LL"}, 'view == "LL"', "view == LL"):
        for res in searcher.search_vectors(q, 10, filters=f):
            assert len(res) == min(10, int((meta["view"] == "LL").sum()))  # rare: searched deeper
            assert (res.rows["view"] == "LL").all()
    res = searcher.search_vectors(q, 10, filters="view != PA and label == normal")
    assert all(((r.rows["view"] != "PA") & (r.rows["label"] == "normal")).all() for r in res)
    res = searcher.search_vectors(q, 10, filters={"view": ["AP", "LL"]})
    assert all(r.rows["view"].isin(["AP", "LL"]).all() and len(r) == 10 for r in res)
    # group exclusion: one value for all, or one per query
    res = searcher.search_vectors(q[:1], 10, exclude_group=("patient_id", "p0"))[0]
    assert "p0" not in set(res.rows["patient_id"]) and len(res) == 10
    own = meta["patient_id"].iloc[:4].tolist()
    for r, pid in zip(
        searcher.search_vectors(q, 10, exclude_group=("patient_id", own)), own, strict=True
    ):
        assert pid not in set(r.rows["patient_id"]) and len(r) == 10
    # exact within the allowed rows
    allowed = np.flatnonzero(meta["view"] == "AP")
    _, ids = exact_search(searcher.handle.vectors()[allowed], q, 10)
    for r, truth in zip(
        searcher.search_vectors(q, 10, filters={"view": "AP"}), allowed[ids], strict=True
    ):
        assert set(r.ids) == set(truth)
    with pytest.raises(ValueError, match="no metadata column 'sex'"):
        searcher.search_vectors(q, 5, filters={"sex": "F"})
    with pytest.raises(ValueError, match="one per query"):
        searcher.search_vectors(q, 5, exclude_group=("patient_id", ["p0"]))


def test_numeric_filter_and_parser(tiny_index: Path, tiny_backbone) -> None:
    searcher = Searcher(tiny_index, backbone=tiny_backbone)
    res = searcher.search_vectors(searcher.handle.vectors()[:1], 5, filters="age == 45")[0]
    assert res.rows["age"].tolist() == [45]
    assert parse_filters("a == 1 and b != 'x y'") == [("a", "==", "1"), ("b", "!=", "x y")]
    with pytest.raises(ValueError, match="column == value"):
        parse_filters("age > 3")


def test_refresh_follows_new_versions(tiny_features: Path, tiny_index: Path, tiny_backbone) -> None:
    searcher = Searcher(tiny_index, backbone=tiny_backbone)
    assert searcher.refresh() is False
    build_index(tiny_features, tiny_index)
    assert searcher.refresh() is True and searcher.handle.version == "v000002"
    assert searcher.refresh() is False
