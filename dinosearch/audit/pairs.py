"""Pairs of films by each signal, as (a, b, score) arrays with a < b, found in bounded chunks.

``Pairs`` = (a (P,) int64, b (P,) int64, score (P,) float32). The embedding pairs use the index
itself: FAISS ``range_search`` (inner product ≥ threshold) where it scores exactly (flat, IVF-flat),
else k-NN candidates rescored exactly, then the threshold (IVF-PQ with or without re-ranking, HNSW).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import faiss
import numpy as np

from dinosearch.audit.pixels import PLAIN, VARIANTS

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


def empty_pairs() -> Pairs:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)


def unique_pairs(a: np.ndarray, b: np.ndarray, score: np.ndarray) -> Pairs:
    """Ordered a < b, self-pairs dropped, each pair once with its highest score."""
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    keep = lo != hi
    lo, hi, score = lo[keep], hi[keep], np.asarray(score, np.float32)[keep]
    order = np.lexsort((-score, hi, lo))
    lo, hi, score = lo[order], hi[order], score[order]
    first = np.ones(len(lo), bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return lo[first], hi[first], score[first]


def concat(*parts: Pairs) -> Pairs:
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def exact_pairs(hashes: Sequence[str | None]) -> Pairs:
    """Films with equal pixel hashes, each linked to the first of its group (score 1)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        if h is not None:
            groups[h].append(i)
    a = [g[0] for g in groups.values() for _ in g[1:]]
    b = [j for g in groups.values() for j in g[1:]]
    return unique_pairs(np.asarray(a, np.int64), np.asarray(b, np.int64), np.ones(len(a)))


def _chunks(n: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, max(1, chunk)):
        yield start, min(n, start + max(1, chunk))


def pixel_neighbours(
    variants: np.ndarray, k: int, *, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Each film's k most correlated other films after alignment: scores (N, k), ids (N, k).

    ``variants``: (N, T, S*S). Every variant of every film searches the plain thumbnails (exact
    inner product, k+1 best each), a film's score against another is its best variant's; memory is
    chunk·T·(k+1) hits whatever N is.
    """
    n, t, d = variants.shape
    if t != VARIANTS:
        raise ValueError(f"thumbnail stack of {t} variants, expected {VARIANTS}; recompute it")
    plain = faiss.IndexFlatIP(d)
    plain.add(np.ascontiguousarray(variants[:, PLAIN]))
    out_s = np.full((n, k), -np.inf, np.float32)
    out_i = np.full((n, k), -1, np.int64)
    for start, stop in _chunks(n, chunk):
        queries = np.ascontiguousarray(variants[start:stop].reshape(-1, d))
        scores, ids = plain.search(queries, min(k + 1, n))
        scores = scores.reshape(stop - start, -1)
        ids = ids.reshape(stop - start, -1)
        for r in range(stop - start):
            _best_others(start + r, scores[r], ids[r], out_s[start + r], out_i[start + r])
    return out_s, out_i


def _best_others(
    row: int, scores: np.ndarray, ids: np.ndarray, out_s: np.ndarray, out_i: np.ndarray
) -> None:
    """Fill out_s/out_i (k,) with the best score per other id among one film's variant hits."""
    keep = (ids != row) & (ids >= 0)
    order = np.argsort(-scores[keep], kind="stable")
    s, i = scores[keep][order], ids[keep][order]
    i, first = np.unique(i, return_index=True)
    best = np.argsort(-s[first], kind="stable")[: len(out_s)]
    out_s[: len(best)], out_i[: len(best)] = s[first][best], i[best]


def pairs_above(scores: np.ndarray, ids: np.ndarray, threshold: float) -> Pairs:
    """The (row, neighbour) pairs of a neighbour table scoring ≥ ``threshold``."""
    rows = np.repeat(np.arange(len(ids)), ids.shape[1])
    hit = (scores.ravel() >= threshold) & (ids.ravel() >= 0)
    return unique_pairs(rows[hit], ids.ravel()[hit], scores.ravel()[hit])


def supports_range_search(index: faiss.Index) -> bool:
    """Whether ``range_search`` scores this index exactly: flat and IVF-flat (others score codes)."""
    return isinstance(index, faiss.IndexFlat | faiss.IndexIVFFlat)


def embedding_pairs(
    index: faiss.Index, vectors: np.ndarray, threshold: float, *, k: int = 10, chunk: int = 4096
) -> tuple[Pairs, str]:
    """Pairs of index vectors with inner product ≥ ``threshold`` → (pairs, method used).

    ``vectors`` (N, D) are the index's own vectors in id order, queried chunk rows at a time, so
    memory is bounded by the chunk and its hits. Flat and IVF-flat run FAISS ``range_search``;
    other types (IVF-PQ with or without a re-ranking copy, HNSW) give each query its k best
    candidates, rescored exactly against ``vectors`` before the threshold.
    """
    n = len(vectors)
    found = [empty_pairs()]
    ranged = supports_range_search(index)
    for start, stop in _chunks(n, chunk):
        queries = np.ascontiguousarray(vectors[start:stop], dtype=np.float32)
        if ranged:
            lims, scores, ids = index.range_search(queries, float(threshold))
            counts = np.diff(np.asarray(lims, dtype=np.int64)).astype(np.int64)
            rows = np.repeat(np.arange(start, stop), counts)
        else:
            _, ids = index.search(queries, min(k + 1, n))
            scores = np.einsum("bd,bkd->bk", queries, vectors[np.clip(ids, 0, None)]).ravel()
            rows = np.repeat(np.arange(start, stop), ids.shape[1])
            ids = ids.ravel()
        hit = (scores >= threshold) & (ids >= 0)
        found.append(unique_pairs(rows[hit], ids[hit], scores[hit]))
    return unique_pairs(*concat(*found)), "range_search" if ranged else f"{k}-NN, rescored"


def neighbours(
    index: faiss.Index, vectors: np.ndarray, k: int, *, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's k nearest others: scores (N, k), ids (N, k) (-1 where fewer exist)."""
    n = len(vectors)
    out_s = np.full((n, k), -np.inf, np.float32)
    out_i = np.full((n, k), -1, np.int64)
    for start, stop in _chunks(n, chunk):
        scores, ids = index.search(np.ascontiguousarray(vectors[start:stop]), min(k + 1, n))
        for r in range(stop - start):
            keep = (ids[r] != start + r) & (ids[r] >= 0)
            s, i = scores[r][keep][:k], ids[r][keep][:k]
            out_s[start + r, : len(s)], out_i[start + r, : len(i)] = s, i
    return out_s, out_i
