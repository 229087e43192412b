"""What the pairs mean: duplicate clusters, leaks between splits, label conflicts, outliers.

Every function takes row-aligned arrays or the metadata DataFrame (row i = film i) and returns a
DataFrame of findings keyed by film ids; nothing here reads images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dinosearch.audit.pairs import Pairs


def clusters(n: int, pairs: Pairs) -> np.ndarray:
    """(N,) cluster number of each film: connected components of the pair graph (union-find)."""
    a, b, _ = pairs
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def cluster_sizes(labels: np.ndarray) -> np.ndarray:
    """(N,) size of each film's cluster."""
    return np.bincount(labels)[labels]


def pair_table(ids: pd.Series, pairs: Pairs, kind: str) -> pd.DataFrame:
    """duplicates.csv rows: id_a, id_b, kind, score (+ row numbers a, b for the sheets)."""
    a, b, score = pairs
    return pd.DataFrame(
        {
            "id_a": ids.to_numpy()[a],
            "id_b": ids.to_numpy()[b],
            "kind": kind,
            "score": np.round(score.astype(np.float64), 5),
            "a": a,
            "b": b,
        }
    )


def leaks(
    meta: pd.DataFrame, dups: pd.DataFrame, split: str | None, group: str | None
) -> pd.DataFrame:
    """One row per leaking pair: the same patient, or duplicate films, under different splits."""
    cols = ["id_a", "id_b", "kind", "split_a", "split_b", "a", "b"]
    if split is None:
        return pd.DataFrame(columns=cols)
    splits = meta[split].astype(str).to_numpy()
    rows = []
    if len(dups):
        cross = dups[splits[dups["a"]] != splits[dups["b"]]]
        rows.append(cross.assign(kind="duplicate " + cross["kind"]))
    if group is not None:
        rows.append(_group_leaks(meta, splits, group))
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.concat(rows, ignore_index=True)
    out["split_a"], out["split_b"] = splits[out["a"]], splits[out["b"]]
    return out[cols]


def _group_leaks(meta: pd.DataFrame, splits: np.ndarray, group: str) -> pd.DataFrame:
    """Each film of a patient outside the patient's first split, paired with a film of that split."""
    ids = meta["id"].astype(str).to_numpy()
    a, b = [], []
    for _, rows in pd.Series(np.arange(len(meta))).groupby(meta[group].astype(str).to_numpy()):
        first = rows.iloc[0]
        for r in rows.iloc[1:]:
            if splits[r] != splits[first]:
                a.append(first)
                b.append(r)
    return pd.DataFrame({"id_a": ids[a], "id_b": ids[b], "kind": "patient", "a": a, "b": b})


def conflicts(meta: pd.DataFrame, dups: pd.DataFrame, label: str | None) -> pd.DataFrame:
    """Duplicate pairs whose labels differ: id_a, id_b, label_a, label_b, kind, score."""
    if label is None or not len(dups):
        return pd.DataFrame(
            columns=["id_a", "id_b", "label_a", "label_b", "kind", "score", "a", "b"]
        )
    labels = meta[label].astype(str).to_numpy()
    out = dups[labels[dups["a"]] != labels[dups["b"]]].copy()
    out["label_a"], out["label_b"] = labels[out["a"]], labels[out["b"]]
    return out[["id_a", "id_b", "label_a", "label_b", "kind", "score", "a", "b"]]


def agreement(meta: pd.DataFrame, label: str | None, nbr_ids: np.ndarray) -> pd.DataFrame:
    """Per film: the share of its k nearest films with its label, and their majority label.

    ``nbr_ids``: (N, k) neighbour rows (-1 = none). Lowest agreement first: review those first.
    """
    if label is None:
        return pd.DataFrame(columns=["id", "label", "agreement", "neighbours_say"])
    labels = meta[label].astype(str).to_numpy()
    valid = nbr_ids >= 0
    theirs = np.where(valid, labels[np.clip(nbr_ids, 0, None)], "")
    same = (theirs == labels[:, None]) & valid
    share = same.sum(1) / np.maximum(valid.sum(1), 1)
    majority = [
        pd.Series(row[row != ""]).mode().iloc[0] if (row != "").any() else "" for row in theirs
    ]
    out = pd.DataFrame(
        {
            "id": meta["id"].astype(str),
            "label": labels,
            "agreement": np.round(share, 3),
            "neighbours_say": majority,
        }
    )
    return out.sort_values("agreement", kind="stable").reset_index(drop=True)


def robust_z(x: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 · MAD); 0 where the spread is 0."""
    med = np.median(x)
    mad = 1.4826 * np.median(np.abs(x - med))
    return (x - med) / mad if mad > 0 else np.zeros_like(x)


def outliers(
    ids: pd.Series, emb_scores: np.ndarray | None, pix_scores: np.ndarray, z_limit: float = 3.5
) -> pd.DataFrame:
    """Films far from all their neighbours, by embedding and by aligned pixels.

    ``*_scores``: (N, k) similarities to the k nearest others. Isolation = 1 - their mean; a film is
    flagged when either isolation's robust z-score exceeds ``z_limit``. Most isolated first.
    """
    pix = 1.0 - np.nanmean(np.where(np.isfinite(pix_scores), pix_scores, np.nan), 1)
    out = pd.DataFrame({"id": ids.astype(str), "pixel_isolation": np.round(pix, 4)})
    out["pixel_z"] = np.round(robust_z(pix), 2)
    z = out["pixel_z"].to_numpy()
    if emb_scores is not None:
        emb = 1.0 - np.nanmean(np.where(np.isfinite(emb_scores), emb_scores, np.nan), 1)
        out["embedding_isolation"] = np.round(emb, 4)
        out["embedding_z"] = np.round(robust_z(emb), 2)
        z = np.maximum(z, out["embedding_z"].to_numpy())
    out["flagged"] = z > z_limit
    out["_z"] = z
    out["row"] = np.arange(len(out))
    return (
        out.sort_values("_z", ascending=False, kind="stable")
        .drop(columns="_z")
        .reset_index(drop=True)
    )


def cleaned_manifest(
    meta: pd.DataFrame, labels: np.ndarray, leak_pairs: pd.DataFrame, split: str | None
) -> tuple[pd.DataFrame, int, int]:
    """One film per duplicate cluster; every leaking group of films moved to its majority split.

    Returns (manifest, films dropped, films moved). Leaking films joined by a shared patient or
    a duplicate pair form one group; ties go to the first split in sort order.
    """
    keep = ~pd.Series(labels).duplicated().to_numpy()
    out = meta.copy()
    moved = 0
    if split is not None and len(leak_pairs):
        n = len(meta)
        pairs = (
            leak_pairs["a"].to_numpy(np.int64),
            leak_pairs["b"].to_numpy(np.int64),
            np.ones(len(leak_pairs)),
        )
        groups = clusters(n, pairs)
        splits = out[split].astype(str)
        for g in np.unique(groups[np.r_[pairs[0], pairs[1]]]):
            rows = np.flatnonzero(groups == g)
            counts = splits.iloc[rows].value_counts()
            target = sorted(counts[counts == counts.max()].index)[0]
            change = rows[splits.iloc[rows].to_numpy() != target]
            out.loc[out.index[change], split] = target
            moved += len(change)
    return out[keep].reset_index(drop=True), int((~keep).sum()), moved
