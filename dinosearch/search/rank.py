"""Ranking under constraints: filters applied before ranking, group exclusion, k distinct cases.

An exact Flat index ranks only the rows passing the filter; other indexes are searched ever deeper
(×4) until k rows pass (or every row was seen), so k results come back whenever k rows pass.
"""

from __future__ import annotations

import faiss
import numpy as np

from dinosearch.core.groups import same_group
from dinosearch.index.handle import IndexHandle

Hits = list[tuple[np.ndarray, np.ndarray]]  # per query: (ids (n,) int64, scores (n,) float32)


def deep_search(
    handle: IndexHandle,
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray | None,
    groups: tuple[np.ndarray, np.ndarray] | None,
    distinct: np.ndarray | None = None,
) -> Hits:
    """Search ever deeper (×4) until each query has k rows that pass the filter and group rule
    (k distinct ``distinct`` codes when given; then every passing row searched is returned)."""
    n = handle.index.ntotal
    if allowed is not None and distinct is None and _exact_flat(handle):
        return _search_allowed(handle, queries, k, allowed, groups)
    share = 1.0 if allowed is None else max(allowed.mean(), 1.0 / max(n, 1))
    plain = allowed is None and groups is None and distinct is None
    depth = min(n, k if plain else max(4 * k, int(2 * k / share)))
    results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)
    todo = np.arange(len(queries))
    while len(todo):
        scores, ids = handle.search(queries[todo], max(depth, 1))  # (b, depth)
        keep = ids >= 0
        if allowed is not None:
            keep &= allowed[np.maximum(ids, 0)]
        if groups is not None:
            codes, query_codes = groups
            keep &= ~same_group(query_codes[todo, None], codes[np.maximum(ids, 0)])
        enough = keep.sum(1) >= k
        if distinct is not None:
            enough = np.array([_cases(distinct[i[h]]) >= k for i, h in zip(ids, keep, strict=True)])
        done = enough | (depth >= n)
        for j in np.flatnonzero(done):
            hit = keep[j]
            last = None if distinct is not None else k
            results[todo[j]] = (ids[j][hit][:last].astype(np.int64), scores[j][hit][:last])
        todo, depth = todo[~done], min(n, depth * 4)
    return results  # type: ignore[return-value]


def _exact_flat(handle: IndexHandle) -> bool:
    return type(handle.index) in (faiss.IndexFlatIP, faiss.IndexFlat)


def _search_allowed(
    handle: IndexHandle,
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray,
    groups: tuple[np.ndarray, np.ndarray] | None,
) -> Hits:
    """Exact Flat index: rank only the rows passing the filter (k whenever k rows pass)."""
    rows = np.flatnonzero(allowed)
    all_scores = _flat_rows(handle, rows) @ queries.T  # (n_allowed, B)
    out = []
    for b in range(len(queries)):
        scores = all_scores[:, b]
        keep = np.ones(len(rows), dtype=bool)
        if groups is not None:
            codes, query_codes = groups
            keep = ~same_group(query_codes[b : b + 1], codes[rows])[0]
        cand, s = rows[keep], scores[keep]
        top = np.lexsort((cand, -s))[:k]
        out.append((cand[top].astype(np.int64), s[top].astype(np.float32)))
    return out


def _flat_rows(handle: IndexHandle, rows: np.ndarray) -> np.ndarray:
    """(n, D) rows of an exact Flat index, read from its storage without copying the rest."""
    index = handle.index
    stored = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d)  # type: ignore[attr-defined]
    return stored.reshape(index.ntotal, index.d)[rows]


def row_vectors(handle: IndexHandle, rows: np.ndarray, every: np.ndarray | None) -> np.ndarray:
    """(n, D) vectors of ``rows``: reconstructed from an index that stores them, else ``every``[rows]."""
    rows = np.asarray(rows, dtype=np.int64)
    index = handle.index
    if every is not None:
        return every[rows]
    if isinstance(index, faiss.IndexIVF):
        index.make_direct_map()
    if not len(rows):
        return np.zeros((0, handle.dim), dtype=np.float32)
    return np.stack([index.reconstruct(int(i)) for i in rows])


def _cases(codes: np.ndarray) -> int:
    """How many cases (groups; a row without a group is a case of its own) ``codes`` hold."""
    return len(np.unique(codes[codes >= 0])) + int((codes < 0).sum())
