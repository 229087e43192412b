"""A map of the collection: a 2-D layout of one index version's vectors, computed once and cached.

UMAP (umap-learn, cosine-like on unit vectors) for collections of ``PCA_BELOW`` films or more, PCA
below that (UMAP needs neighbours). The layout is cached per index version under
``$DINOSEARCH_CACHE/maps`` (else ``~/.cache/dinosearch/maps``), keyed by the version's index
checksum: a new version (new films, another adapter) gets its own layout, an old one is reused.
Index folders are never written to.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dinosearch.index.handle import IndexHandle

PCA_BELOW = 50
SEED = 0


@dataclass(frozen=True)
class CollectionMap:
    """Row i of ``xy`` is vector id i (= metadata row i) of ``version``."""

    xy: np.ndarray  # (N, 2) float32
    method: str  # "umap" or "pca"
    version: str
    seconds: float  # build time (0 when read from the cache)
    cached: bool


def default_map_cache() -> Path:
    """``$DINOSEARCH_CACHE/maps``, else ``~/.cache/dinosearch/maps``."""
    root = os.environ.get("DINOSEARCH_CACHE") or Path.home() / ".cache" / "dinosearch"
    return Path(root) / "maps"


def layout(vectors: np.ndarray, *, seed: int = SEED) -> tuple[np.ndarray, str]:
    """(N, D) unit vectors → ((N, 2) float32 layout, method): UMAP, or PCA for tiny sets."""
    x = np.asarray(vectors, dtype=np.float32)
    if len(x) < 3:
        return np.zeros((len(x), 2), dtype=np.float32), "pca"
    if len(x) < PCA_BELOW:
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x).astype(np.float32), "pca"
    import umap

    reducer = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=seed, n_jobs=1)
    return np.asarray(reducer.fit_transform(x), dtype=np.float32), "umap"


def collection_map(handle: IndexHandle, cache_dir: str | Path | None = None) -> CollectionMap:
    """The 2-D map of ``handle``'s version: read from the cache, else built (seconds) and cached."""
    folder = Path(cache_dir) if cache_dir is not None else default_map_cache()
    key = hashlib.sha256(
        f"{handle.path.resolve()}|{handle.version}|{handle.manifest['checksums']['index.faiss']}".encode()
    ).hexdigest()[:24]
    path = folder / f"{handle.version}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as saved:
                xy, method = saved["xy"], str(saved["method"])
            if xy.shape == (handle.count, 2):
                return CollectionMap(xy, method, handle.version, 0.0, True)
        except (OSError, ValueError, KeyError):
            pass  # unreadable: rebuilt below
    start = time.perf_counter()
    xy, method = layout(handle.vectors())
    seconds = time.perf_counter() - start
    _save(path, xy, method)
    return CollectionMap(xy, method, handle.version, seconds, False)


def _save(path: Path, xy: np.ndarray, method: str) -> None:
    """Write whole or not at all (a temporary file renamed); a read-only cache only costs a rebuild."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as f:
            np.savez(f, xy=xy, method=np.array(method))
        os.replace(f.name, path)
    except OSError:
        return


def place_query(xy: np.ndarray, ids: np.ndarray, scores: np.ndarray, top: int = 3) -> np.ndarray:
    """(2,) where a query falls on the map: the score-weighted mean of its ``top`` results' points
    (an outside film has no point of its own; UMAP is not refitted for it)."""
    ids, w = np.asarray(ids[:top], dtype=np.int64), np.maximum(np.asarray(scores[:top]), 1e-6)
    if not len(ids):
        return np.full(2, np.nan, dtype=np.float32)
    return (xy[ids] * w[:, None]).sum(0) / w.sum()
