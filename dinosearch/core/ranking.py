"""Exact ranking with exclusions, shared by training's validation and the A/B evaluation.

A query never retrieves itself nor, when groups are given (e.g. ``patient_id``), any item of its
group; ``within_strata`` further limits the gallery to the query's own stratum (e.g. its source).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dinosearch.core import metrics
from dinosearch.core.groups import exclusion_mask


@dataclass(frozen=True)
class Side:
    """The rows on one side (queries or gallery): ids, (N, L) label indicator, groups, strata."""

    ids: np.ndarray
    labels: np.ndarray
    groups: np.ndarray | None = None
    strata: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> Side:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return Side(self.ids[rows], self.labels[rows], pick(self.groups), pick(self.strata))


def _excluded(query: Side, gallery: Side, rows: slice, within_strata: bool) -> np.ndarray:
    q = query.take(np.arange(len(query.ids))[rows])
    return exclusion_mask(
        q.ids,
        gallery.ids,
        q.groups,
        gallery.groups,
        q.strata if within_strata else None,
        gallery.strata if within_strata else None,
    )


def rank_exact(
    queries: np.ndarray,
    gallery_vectors: np.ndarray,
    k: int,
    query: Side,
    gallery: Side,
    *,
    within_strata: bool = False,
    chunk: int = 1024,
) -> np.ndarray:
    """Exact inner-product top-k with exclusions: (Q, D), (G, D) → (Q, k) positions, -1 = none."""
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(queries), chunk):
        rows = slice(start, start + chunk)
        scores = queries[rows] @ gallery_vectors.T  # (q, G)
        excluded = _excluded(query, gallery, rows, within_strata)
        scores = np.where(excluded, -np.inf, scores)
        kk = min(k, scores.shape[1])
        top = (
            np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            if kk < scores.shape[1]
            else (np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1)))
        )
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top[np.take_along_axis(excluded, top, axis=1)] = -1
        out[rows, :kk] = top
    return out


def eligibility(
    query: Side, gallery: Side, *, within_strata: bool = False, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(Q,) relevant eligible items and (Q,) eligible items per query."""
    n_rel, n_elig = [], []
    for start in range(0, len(query.ids), chunk):
        rows = slice(start, start + chunk)
        excluded = _excluded(query, gallery, rows, within_strata)
        n_rel.append(
            metrics.count_relevant(metrics.relevance(query.labels[rows], gallery.labels), excluded)
        )
        n_elig.append((~excluded).sum(axis=1))
    return np.concatenate(n_rel), np.concatenate(n_elig)
