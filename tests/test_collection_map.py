"""The collection map: a 2-D layout per index version, cached and rebuilt for a new version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dinosearch.explain import collection
from dinosearch.explain.collection import collection_map, layout, place_query
from dinosearch.index import build_index, open_index


def test_map_cached_per_version_and_rebuilt_for_a_new_one(
    synthetic_features: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collection, "PCA_BELOW", 10**6)  # the cache is what is tested: PCA is quick
    build_index(synthetic_features, tmp_path / "idx")
    cache = tmp_path / "maps"
    first = collection_map(open_index(tmp_path / "idx"), cache)
    assert not first.cached and first.xy.shape == (300, 2) and first.method == "pca"
    again = collection_map(open_index(tmp_path / "idx"), cache)
    assert again.cached and again.version == first.version
    np.testing.assert_array_equal(again.xy, first.xy)
    assert not any((tmp_path / "idx").rglob("*.npz"))  # the index folder is never written to
    build_index(synthetic_features, tmp_path / "idx", index_type="hnsw")  # a new version
    newer = collection_map(open_index(tmp_path / "idx"), cache)
    assert newer.version != first.version and not newer.cached
    assert len(list(cache.glob("*.npz"))) == 2
    (next(cache.glob(f"{newer.version}-*.npz"))).write_bytes(b"garbage")  # damaged: rebuilt
    assert not collection_map(open_index(tmp_path / "idx"), cache).cached


@pytest.mark.slow  # numba compiles UMAP on first use: ~30 s on 2 shared cores
def test_umap_layout_keeps_clusters_apart() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16)) * 3
    x = np.concatenate(
        [centres[0] + rng.normal(size=(40, 16)), centres[1] + rng.normal(size=(40, 16))]
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    xy, method = layout(x)
    assert method == "umap" and xy.shape == (80, 2) and np.isfinite(xy).all()
    a, b = xy[:40].mean(0), xy[40:].mean(0)
    spread = max(xy[:40].std(0).max(), xy[40:].std(0).max())
    assert np.linalg.norm(a - b) > 2 * spread
    tiny, how = layout(x[:10])
    assert how == "pca" and tiny.shape == (10, 2)
    where = place_query(xy, np.array([0, 1, 2]), np.array([0.9, 0.8, 0.7]))
    assert np.linalg.norm(where - xy[:3].mean(0)) < np.linalg.norm(a - b)
