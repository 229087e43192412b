"""Exact k-NN and k-means in NumPy; faiss keeps the index structure and file format.

faiss-cpu wheels ship a generic BLAS that runs ~10x slower than numpy's on recent CPUs, so the
matmul-heavy steps (exact search, k-means, IVF assignment, PQ codebooks) run here in numpy and
their results are written into faiss indexes.
"""

from __future__ import annotations

import warnings
from typing import Any

import faiss
import numpy as np


def exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 1 << 18
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products: (N, D), (B, D) → scores (B, k') float32, ids (B, k') int64, k' = min(k, N).

    What is promised, on every CPU, thread count and ``chunk``: each row is a top-k up to ``TIE_TOL``
    (no unreturned id scores more than ``TIE_TOL`` above a returned one), and rows are in score order.
    The returned candidates are re-scored one pair at a time, in float64, by one fixed computation that
    does not depend on the chunking, and sorted by (score, smaller id): identical vectors therefore
    always come out smaller id first. Which of several ids within ``TIE_TOL`` of each other fills the
    last place may differ between machines, because BLAS rounds the chunked matmul differently.
    """
    best_s = np.empty((len(queries), 0), np.float32)
    best_i = np.empty((len(queries), 0), np.int64)
    for start in range(0, len(vectors), chunk):
        scores = queries @ vectors[start : start + chunk].T  # (B, c)
        cand = min(k, scores.shape[1])
        top = np.argpartition(-scores, cand - 1, axis=1)[:, :cand]
        best_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], axis=1)
        best_i = np.concatenate([best_i, top + start], axis=1)
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s, best_i = (
                np.take_along_axis(best_s, keep, 1),
                np.take_along_axis(best_i, keep, 1),
            )
    exact = rescore(vectors, queries, best_i)
    order = np.lexsort((best_i, -exact), axis=-1)
    return (
        np.take_along_axis(exact, order, 1).astype(np.float32),
        np.take_along_axis(best_i, order, 1),
    )


# Scores closer than this may be ranked either way (float32 dot products of unit vectors: ~1e-7).
TIE_TOL = 1e-5


def rescore(vectors: np.ndarray, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(N, D), (B, D), (B, k) ids → (B, k) float64 inner products, each pair summed the same way."""
    out = np.empty(ids.shape, np.float64)
    step = max(
        1, (1 << 22) // max(1, ids.shape[1] * vectors.shape[1])
    )  # ≤ 32 MiB of float64 at a time
    for b in range(0, len(ids), step):
        picked = vectors[ids[b : b + step]].astype(np.float64)  # (b, k, D)
        out[b : b + step] = (picked * queries[b : b + step, None, :].astype(np.float64)).sum(-1)
    return out


def search_index(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, D) unit queries → scores (B, k), ids (B, k); exact Flat runs as one numpy matmul."""
    if type(index) in (faiss.IndexFlatIP, faiss.IndexFlat):
        n, d = index.ntotal, index.d
        stored = faiss.rev_swig_ptr(index.get_xb(), n * d).reshape(n, d)  # type: ignore[attr-defined]  # no copy
        return exact_search(stored, queries, k)
    return index.search(queries, k)


def assign(vectors: np.ndarray, centroids: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """(N, D) → (N,) int64 index of the highest inner-product centroid."""
    out = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        out[start : start + chunk] = np.argmax(vectors[start : start + chunk] @ centroids.T, axis=1)
    return out


def kmeans(x: np.ndarray, k: int, *, niter: int = 10, seed: int = 0) -> np.ndarray:
    """Spherical k-means (unit centroids, inner-product assignment): (n, D) → (k, D) float32."""
    rng = np.random.default_rng(seed)
    centroids = x[np.sort(rng.choice(len(x), k, replace=False))].copy()
    for _ in range(niter):
        labels = assign(x, centroids)
        sums = np.zeros_like(centroids)
        _scatter_add(sums, labels, x)
        empty = np.bincount(labels, minlength=k) == 0
        sums[empty] = x[rng.choice(len(x), int(empty.sum()))]  # re-seed lists that lost every point
        centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return centroids.astype(np.float32)


def sample(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """At most ``n`` rows of ``x``, drawn without replacement and kept in order (contiguous)."""
    if len(x) <= n:
        return np.ascontiguousarray(x)
    rows = np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))
    return np.ascontiguousarray(x[rows])


def train_pq(index: faiss.IndexIVFPQ, points: np.ndarray, niter: int) -> None:
    """Codebooks of the residuals to their lists: one L2 k-means per sub-space, (m, ksub, dsub)."""
    centroids = index.quantizer.reconstruct_n(0, index.nlist)
    residuals = points - centroids[assign(points, centroids)]
    pq, rng = index.pq, np.random.default_rng(0)
    books = []
    for j in range(pq.M):
        sub = np.ascontiguousarray(residuals[:, j * pq.dsub : (j + 1) * pq.dsub])
        c = sub[rng.choice(len(sub), pq.ksub, replace=len(sub) < pq.ksub)].copy()
        for _ in range(niter):
            labels = np.argmin((c * c).sum(1) - 2 * sub @ c.T, axis=1)
            sums = np.zeros_like(c)
            _scatter_add(sums, labels, sub)
            counts = np.bincount(labels, minlength=pq.ksub)[:, None]
            c = np.where(counts > 0, sums / np.maximum(counts, 1), c).astype(np.float32)
        books.append(c)
    faiss.copy_array_to_vector(np.stack(books).astype(np.float32).ravel(), pq.centroids)
    index.is_trained = True
    index.precompute_table()


def _scatter_add(sums: np.ndarray, labels: np.ndarray, x: np.ndarray) -> None:
    """sums[labels[i]] += x[i] for every row i, in place (torch's index_add_ is much faster here)."""
    import torch

    torch.from_numpy(sums).index_add_(0, torch.from_numpy(labels), torch.from_numpy(x))


def add_vectors(index: faiss.Index, vectors: np.ndarray) -> None:
    """Append (N, D) vectors; ids continue from ``index.ntotal`` (IVF lists assigned by numpy)."""
    if isinstance(index, faiss.IndexIVF) and len(vectors):
        from faiss.contrib.ivf_tools import add_preassigned

        centroids = index.quantizer.reconstruct_n(0, index.nlist)
        add_preassigned(index, np.ascontiguousarray(vectors), assign(vectors, centroids))
    else:
        index.add(vectors)


def _factory(kind: str, dim: int, p: dict[str, Any]) -> faiss.Index:
    spec = {
        "flat": "Flat",
        "ivf-flat": f"IVF{p.get('nlist')},Flat",
        "ivf-pq": f"IVF{p.get('nlist')},PQ{p.get('m')}x{p.get('nbits', 8)}",
        "hnsw": f"HNSW{p.get('M')},Flat",
    }[kind]
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    if isinstance(index, faiss.IndexIVF):
        index.cp.niter = int(p.get("niter", 10))
        index.cp.max_points_per_centroid = int(p.get("max_points_per_centroid", 40))
        index.nprobe = int(p["nprobe"])
    if isinstance(index, faiss.IndexIVFPQ):
        index.pq.cp.niter = int(p.get("niter", 10))
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efConstruction = int(p["ef_construction"])
        index.hnsw.efSearch = int(p["ef_search"])
    return index


def train_add(
    kind: str, p: dict[str, Any], vectors: np.ndarray, use_gpu: bool | None
) -> tuple[faiss.Index, str]:
    """A filled index of ``kind`` (see ``index.choose_index``): by faiss on a GPU it sees, else here.

    Returns the CPU index and where it was built ("gpu" or "cpu").
    """
    index = _factory(kind, vectors.shape[1], p)
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu and not gpus:
        raise ValueError(
            "a GPU build was asked for but faiss sees no GPU; install faiss-gpu or drop --gpu"
        )
    if gpus and use_gpu is not False and kind != "hnsw":  # faiss builds HNSW on the CPU only
        try:
            options = faiss.GpuClonerOptions()
            options.useFloat16 = (
                kind == "ivf-pq"
            )  # PQ lookup tables only; stored codes do not change
            gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index, options)
            gpu.train(vectors)
            gpu.add(vectors)
            return faiss.index_gpu_to_cpu(gpu), "gpu"
        except Exception as e:  # an unsupported parameter on the GPU is no reason to fail the build
            if use_gpu:
                raise
            warnings.warn(f"GPU build failed ({e}); building on the CPU", stacklevel=2)
            index = _factory(kind, vectors.shape[1], p)
    if isinstance(index, faiss.IndexIVF):  # coarse k-means by BLAS matmul: see ``kmeans``
        points = sample(vectors, int(p["nlist"]) * int(p.get("max_points_per_centroid", 40)))
        index.quantizer.add(kmeans(points, int(p["nlist"]), niter=int(p.get("niter", 10))))
    if isinstance(index, faiss.IndexIVFPQ):
        points = sample(vectors, 64 * 2 ** int(p.get("nbits", 8)))
        train_pq(index, points, int(p.get("niter", 10)))
    index.is_trained = True  # quantizer (and codebooks) set above; Flat and HNSW need no training
    add_vectors(index, vectors)
    return index, "cpu"
