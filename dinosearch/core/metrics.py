"""Retrieval metrics from ranked gallery positions and labels; pure NumPy, independent of FAISS.

Vocabulary: ``ranked`` is a (Q, k) int array of gallery row positions, best first, ``-1`` where
no item was returned. Labels may be multi-label strings ``"a|b"``; an item is *relevant* to a query
when they share at least one label. *Eligible* items are those not excluded (the query itself,
its group, …); ``n_relevant`` counts the relevant eligible items of each query.

Per-query metrics at cut-off k (NaN where undefined, i.e. no relevant eligible item):

- ``hit_rate@k``: 1 if at least one relevant item is in the top k (often called "recall@k"
  in image-retrieval papers).
- ``recall@k``: the fraction of all relevant eligible items found in the top k.
- ``precision@k``: relevant items in the top k divided by k.
- ``map@k``: average precision at k, ``sum_i P@i · rel_i / min(k, n_relevant)``.
- ``knn_accuracy@k``: 1 if the majority label of the top k (ties go to the label ranked first)
  is one of the query's labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("hit_rate", "recall", "precision", "map", "knn_accuracy")


def split_labels(label: object, sep: str = "|") -> list[str]:
    """``"a|b"`` or a list ``["a", "b"]`` (a list-typed Parquet column) → ``["a", "b"]``; missing or
    empty labels → ``[]``."""
    if label is None or (isinstance(label, float) and np.isnan(label)):
        return []
    if isinstance(label, list | tuple | np.ndarray):
        return [part for item in label for part in split_labels(item, sep)]
    return [part.strip() for part in str(label).split(sep) if part.strip()]


def join_labels(label: object, sep: str = "|") -> str | None:
    """One label value as its ``"a|b"`` text (lists joined), None when it has no label."""
    return sep.join(split_labels(label, sep)) or None


def label_indicator(
    labels: Sequence[object], vocabulary: Sequence[str] | None = None, sep: str = "|"
) -> tuple[np.ndarray, list[str]]:
    """Labels → ((N, L) bool indicator, L label names: sorted, or ``vocabulary`` when given)."""
    parsed = [split_labels(label, sep) for label in labels]
    names = list(vocabulary) if vocabulary is not None else sorted({x for p in parsed for x in p})
    column = {name: j for j, name in enumerate(names)}
    indicator = np.zeros((len(parsed), len(names)), dtype=bool)
    for i, parts in enumerate(parsed):
        for part in parts:
            if part in column:
                indicator[i, column[part]] = True
    return indicator, names


def relevance(query_ind: np.ndarray, gallery_ind: np.ndarray) -> np.ndarray:
    """(Q, L), (G, L) bool → (Q, G) bool: the pair shares at least one label."""
    return (query_ind.astype(np.float32) @ gallery_ind.T.astype(np.float32)) > 0


def count_relevant(relevant: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """(Q, G) bool, (Q, G) bool → (Q,) number of relevant eligible gallery items."""
    return (relevant & ~excluded).sum(axis=1)


def retrieval_metrics(
    ranked: np.ndarray,
    query_ind: np.ndarray,
    gallery_ind: np.ndarray,
    n_relevant: np.ndarray,
    ks: Sequence[int],
) -> dict[str, np.ndarray]:
    """Per-query metrics (see module docstring) for each k in ``ks``.

    Args:
        ranked: (Q, >= max(ks)) gallery positions with exclusions already applied, -1 = none.
        query_ind: (Q, L) bool label indicator of the queries.
        gallery_ind: (G, L) bool label indicator of the gallery, same label columns.
        n_relevant: (Q,) relevant eligible items per query (``count_relevant``).
        ks: cut-offs, each <= ranked.shape[1].
    Returns:
        ``{"precision@10": (Q,) float64, …}`` for every metric in ``METRICS`` and k in ``ks``.
    """
    ranked = np.asarray(ranked)
    kmax = max(ks)
    if ranked.shape[1] < kmax:
        raise ValueError(f"ranked lists hold {ranked.shape[1]} items but k={kmax} was asked for")
    valid = ranked[:, :kmax] >= 0
    items = gallery_ind[np.where(valid, ranked[:, :kmax], 0)] & valid[:, :, None]  # (Q, kmax, L)
    rel = (items & query_ind[:, None, :]).any(axis=2)  # (Q, kmax)
    cum = np.cumsum(rel, axis=1)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    has_rel = n_rel > 0
    out: dict[str, np.ndarray] = {}
    for k in ks:
        found = cum[:, k - 1].astype(np.float64)
        prec_at_i = cum[:, :k] / np.arange(1, k + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"hit_rate@{k}"] = np.where(has_rel, (found > 0).astype(np.float64), np.nan)
            out[f"recall@{k}"] = np.where(has_rel, found / n_rel, np.nan)
            out[f"precision@{k}"] = found / k
            ap = (prec_at_i * rel[:, :k]).sum(axis=1) / np.minimum(k, n_rel)
            out[f"map@{k}"] = np.where(has_rel, ap, np.nan)
        out[f"knn_accuracy@{k}"] = _knn_correct(items[:, :k], query_ind)
    return out


def _knn_correct(items: np.ndarray, query_ind: np.ndarray) -> np.ndarray:
    """(Q, k, L) neighbour labels, (Q, L) → (Q,) 1.0 where the majority vote is a query label."""
    q, k, n_labels = items.shape
    if n_labels == 0 or k == 0:
        return np.zeros(q)
    votes = items.sum(axis=1)  # (Q, L)
    first = np.where(items.any(axis=1), items.argmax(axis=1), k)  # earliest rank holding the label
    score = votes * (k + 1) + (k - first)  # ties broken by the best-ranked label
    pred = score.argmax(axis=1)
    correct = query_ind[np.arange(q), pred] & (votes.max(axis=1) > 0)
    return correct.astype(np.float64)


def per_label(
    per_query: dict[str, np.ndarray], query_ind: np.ndarray, names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``{label: {"queries": n, metric: mean}}``; a multi-label query counts under each label."""
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        rows = query_ind[:, j]
        entry: dict[str, float] = {"queries": int(rows.sum())}
        entry.update({m: nanmean(v[rows]) for m, v in per_query.items()})
        out[name] = entry
    return out


def nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    return float(values[defined].mean()) if defined.any() else float("nan")


def headline_k(ks: Sequence[int]) -> int:
    """The cut-off that reports and the app lead with: 10 when evaluated, else the largest."""
    return 10 if 10 in ks else max(ks)
