"""View cache: computed once, reused on a matching key, recomputed on any change; bad files skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dinosearch.adapt.augment import build_augment
from dinosearch.adapt.online import iter_fresh_pairs
from dinosearch.adapt.view_cache import compute_views, default_cache_dir
from dinosearch.features.folder import FeatureSet, embed_to_folder
from dinosearch.inputs.records import load_records


@pytest.fixture(scope="module")
def records(image_folder: Path):  # type: ignore[no-untyped-def]
    return load_records(image_folder)[0]


def test_cache_hit_and_every_key_change_misses(records, tiny_backbone, tmp_path) -> None:
    few = records.iloc[:4].reset_index(drop=True)

    def views(recs=few, **kw):  # type: ignore[no-untyped-def]
        args = {"views": 2, "seed": 0, "preset": "xray", "clean": False, "num_workers": 0, **kw}
        return compute_views(recs, tiny_backbone, cache_dir=tmp_path, progress=False, **args)

    first = views()
    assert first.views.shape == (4, 2, 32) and first.sources == {"views": "computed"}
    assert not np.array_equal(first.views[:, 0], first.views[:, 1])  # two different views
    again = views()
    assert again.sources == {"views": "cache"} and np.array_equal(again.views, first.views)
    for change in ({"views": 3}, {"preset": "natural"}, {"seed": 1}, {"recs": few.iloc[:-1]}):
        assert views(**change).sources == {"views": "computed"}, change
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 5
    assert views(views=3).views[:, :2].tobytes() == first.views.tobytes()  # view v = same seed


def test_views_repeat_whatever_the_workers(records, tiny_backbone, tmp_path) -> None:
    kw = {"views": 2, "clean": False, "progress": False}
    serial = compute_views(records, tiny_backbone, cache_dir=tmp_path / "a", num_workers=0, **kw)
    parallel = compute_views(records, tiny_backbone, cache_dir=tmp_path / "b", num_workers=1, **kw)
    np.testing.assert_allclose(serial.views, parallel.views, rtol=1e-5, atol=1e-6)


def test_bad_files_are_skipped_and_reported(image_folder, tiny_backbone, tmp_path) -> None:
    folder = tmp_path / "imgs"
    shutil.copytree(image_folder / "normal", folder / "normal")
    (folder / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    recs = load_records(folder)[0]
    vs = compute_views(
        recs, tiny_backbone, views=2, cache_dir=tmp_path / "c", progress=False, num_workers=0
    )
    assert len(recs) == 5 and vs.views.shape == (4, 3, 32)
    assert "broken" not in " ".join(vs.records["id"])
    assert vs.skipped["path"].str.endswith("broken.png").tolist() == [True]
    cached = compute_views(
        recs, tiny_backbone, views=2, cache_dir=tmp_path / "c", progress=False, num_workers=0
    )
    assert cached.sources == {"views": "cache", "clean": "cache"} and len(cached.skipped) == 1
    fs = embed_to_folder(recs, tiny_backbone, tmp_path / "feats", progress=False, num_workers=0)
    assert len(fs.metadata) == 4  # embed skipped the broken file too: its features still serve
    reused = compute_views(
        recs, tiny_backbone, views=2, cache_dir=tmp_path / "c", progress=False, clean_features=fs
    )
    assert reused.sources["clean"] == "features"
    np.testing.assert_allclose(reused.views, cached.views, rtol=1e-5, atol=1e-6)


def test_clean_view_reused_from_embed_output(records, tiny_backbone, tmp_path) -> None:
    fs = embed_to_folder(records, tiny_backbone, tmp_path / "feats", progress=False, num_workers=0)
    kw = {"views": 1, "cache_dir": tmp_path / "cache", "progress": False, "num_workers": 0}
    reused = compute_views(records, tiny_backbone, clean_features=fs, **kw)
    assert reused.sources == {"views": "computed", "clean": "features"}
    assert np.array_equal(reused.views[:, 1], np.asarray(fs.features))
    computed = compute_views(records, tiny_backbone, **kw)
    assert computed.sources["clean"] == "computed"
    part = FeatureSet(fs.features[:6], fs.metadata.iloc[:6], fs.manifest)  # another image set
    assert (
        compute_views(records, tiny_backbone, clean_features=part, **kw).sources["clean"] == "cache"
    )
    np.testing.assert_allclose(computed.views, reused.views, rtol=1e-5, atol=1e-6)
    other = FeatureSet(
        fs.features,
        fs.metadata,
        {**fs.manifest, "backbone": {"fingerprint": "dinov2_vits14|x|224px|cls"}},
    )
    with pytest.raises(ValueError, match="dinov2_vits14.*dinov2_tiny_test"):
        compute_views(records, tiny_backbone, clean_features=other, **kw)


def test_default_cache_dir_and_bad_view_count(monkeypatch, records, tiny_backbone) -> None:
    monkeypatch.setenv("DINOSEARCH_CACHE", "/somewhere")
    assert default_cache_dir() == Path("/somewhere/views")
    with pytest.raises(ValueError, match="--views"):
        compute_views(records, tiny_backbone, views=0, clean=False)


def test_fresh_pairs_are_two_different_views(records, tiny_backbone) -> None:
    augment = build_augment("xray", tiny_backbone.preprocess)
    paths = records["path"].tolist()
    batches = list(
        iter_fresh_pairs(paths, tiny_backbone, augment, seed=3, batch_size=5, num_workers=0)
    )
    pos = np.concatenate([p for p, _ in batches])
    assert sorted(pos.tolist()) == list(range(12)) and batches[0][1].shape == (5, 2, 32)
    assert not np.allclose(batches[0][1][:, 0].numpy(), batches[0][1][:, 1].numpy())
