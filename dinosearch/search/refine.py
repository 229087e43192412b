"""Refining a ranking: relevance feedback (Rocchio), one case per patient, MMR diversity.

Pure numpy on unit vectors and id/score arrays, so the searcher, the app and the service share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dinosearch.adapt.vectors import to_vectors


@dataclass(frozen=True)
class Rocchio:
    """Weights of the moved query: α·query + β·mean(similar) − γ·mean(not similar), then normalised.

    The textbook defaults (Manning, Raghavan & Schütze, *Introduction to Information Retrieval*, §9.1.1).
    """

    alpha: float = 1.0
    beta: float = 0.75
    gamma: float = 0.25


def rocchio(
    queries: np.ndarray,
    like: np.ndarray | None = None,
    unlike: np.ndarray | None = None,
    weights: Rocchio = Rocchio(),
) -> np.ndarray:
    """(B, D) unit queries, (m, D) similar and (n, D) not-similar unit vectors → (B, D) unit queries.

    Every query moves the same way (the marks are about the results of that search). With no marks
    the queries come back unchanged (normalised).

    Raises:
        ValueError: the moved query is the zero vector (the marks cancel the query out).
    """
    q = weights.alpha * np.atleast_2d(np.asarray(queries, dtype=np.float32))
    if like is not None and len(like):
        q = q + weights.beta * to_vectors(np.atleast_2d(like)).mean(axis=0)
    if unlike is not None and len(unlike):
        q = q - weights.gamma * to_vectors(np.atleast_2d(unlike)).mean(axis=0)
    if not (np.linalg.norm(q, axis=1) > 1e-6).all():
        raise ValueError("the similar/not-similar marks cancel the query out; unmark some results")
    return to_vectors(q.astype(np.float32))


def first_per_group(ids: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Positions (≤ k,) of the first (best) hit of each group in a ranked ``ids`` list.

    ``codes`` (N,) are the group codes of every row (negative: no group, each such row its own case).
    """
    seen: set[int] = set()
    keep: list[int] = []
    for pos, i in enumerate(np.asarray(ids, dtype=np.int64)):
        code = int(codes[i])
        if code >= 0 and code in seen:
            continue
        seen.add(code)
        keep.append(pos)
        if len(keep) == k:
            break
    return np.asarray(keep, dtype=np.int64)


def group_sizes(codes: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """(N,) codes → (N,) how many rows (passing ``allowed``) share each row's group (1 without one)."""
    codes = np.asarray(codes, dtype=np.int64)
    passing = np.ones(len(codes), dtype=bool) if allowed is None else np.asarray(allowed)
    counts = np.bincount(codes[(codes >= 0) & passing], minlength=int(codes.max(initial=-1)) + 1)
    sizes = np.ones(len(codes), dtype=np.int64)
    known = codes >= 0
    sizes[known] = np.maximum(counts[codes[known]], 1)
    return sizes


def mmr(query: np.ndarray, candidates: np.ndarray, k: int, lam: float = 0.7) -> np.ndarray:
    """Maximal marginal relevance (Carbonell & Goldstein 1998): positions (≤ k,) of the chosen rows.

    ``query`` (D,), ``candidates`` (c, D) unit vectors, best first; each pick maximises
    λ·sim(query, x) − (1 − λ)·max sim(x, picked). λ = 1 is the plain ranking.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"MMR lambda {lam} must be in [0, 1] (1 = no diversity)")
    relevance = candidates @ np.asarray(query, dtype=np.float32)  # (c,)
    chosen: list[int] = []
    redundancy = np.full(len(candidates), -np.inf, dtype=np.float32)
    left = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        worst = np.where(np.isfinite(redundancy), redundancy, 0.0)
        gain = np.where(left, lam * relevance - (1 - lam) * worst, -np.inf)
        pick = int(np.argmax(gain))
        chosen.append(pick)
        left[pick] = False
        redundancy = np.maximum(redundancy, candidates @ candidates[pick])
    return np.asarray(chosen, dtype=np.int64)
