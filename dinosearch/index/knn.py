"""Exact k-NN and k-means in NumPy; faiss keeps the index structure and file format.

faiss-cpu wheels ship a generic BLAS that runs ~10x slower than numpy's on recent CPUs, so the
matmul-heavy steps (exact search, k-means, IVF assignment, PQ codebooks) run here in numpy and
their results are written into faiss indexes.
"""

from __future__ import annotations

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
    """Codebooks of the residuals to their lists: L2 k-means in all m sub-spaces at once, (m, ksub, dsub)."""
    import torch

    centroids = index.quantizer.reconstruct_n(0, index.nlist)
    residuals = points - centroids[assign(points, centroids)]
    pq, n = index.pq, len(points)
    m, ksub, dsub = pq.M, pq.ksub, pq.dsub
    x = torch.from_numpy(np.ascontiguousarray(residuals)).view(n, m, dsub).transpose(0, 1)
    x = x.contiguous()  # (m, n, dsub)
    seeds = np.random.default_rng(0).choice(n, ksub, replace=n < ksub)
    books = x[:, torch.from_numpy(seeds)].clone()  # (m, ksub, dsub)
    offsets = torch.arange(m)[:, None] * ksub  # sub-space j's codes live at j * ksub + code
    for _ in range(niter):
        labels = torch.empty((m, n), dtype=torch.long)
        norms = (books * books).sum(-1)[:, None, :]  # (m, 1, ksub)
        for s in range(0, n, 4096):  # (m, 4096, ksub) distances at a time: ≤ 400 MiB
            dots = torch.bmm(x[:, s : s + 4096], books.transpose(1, 2))
            labels[:, s : s + 4096] = (norms - 2 * dots).argmin(-1)
        flat = (labels + offsets).reshape(-1)
        sums = torch.zeros(m * ksub, dsub).index_add_(0, flat, x.reshape(-1, dsub))
        counts = torch.bincount(flat, minlength=m * ksub)[:, None]
        books = torch.where(counts > 0, sums / counts.clamp(min=1), books.reshape(-1, dsub))
        books = books.view(m, ksub, dsub)
    faiss.copy_array_to_vector(books.numpy().astype(np.float32).ravel(), pq.centroids)
    index.is_trained = True
    index.precompute_table()


def _scatter_add(sums: np.ndarray, labels: np.ndarray, x: np.ndarray) -> None:
    """sums[labels[i]] += x[i] for every row i, in place (torch's index_add_ is much faster here)."""
    import torch

    torch.from_numpy(sums).index_add_(0, torch.from_numpy(labels), torch.from_numpy(x))


def add_vectors(index: faiss.Index, vectors: np.ndarray) -> None:
    """Append (N, D) vectors; ids continue from ``index.ntotal`` (IVF lists assigned by numpy)."""
    if isinstance(index, faiss.IndexRefine):  # candidates' index and re-ranking copy both grow
        add_vectors(faiss.downcast_index(index.base_index), vectors)
        index.refine_index.add(vectors)
        index.ntotal = index.refine_index.ntotal
    elif isinstance(index, faiss.IndexIVF) and len(vectors):
        from faiss.contrib.ivf_tools import add_preassigned

        centroids = index.quantizer.reconstruct_n(0, index.nlist)
        add_preassigned(index, np.ascontiguousarray(vectors), assign(vectors, centroids))
    else:
        index.add(vectors)
