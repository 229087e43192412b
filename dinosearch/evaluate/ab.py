"""Raw vs training-free baselines vs adapted retrieval → one JSON-ready result with paired CIs.

Protocols: leave-one-out (every row queries all others) or query set vs gallery (``query_mask``).
A query never sees itself nor, when groups are given (e.g. ``patient_id``), any item of its group.
Methods: ``raw`` (the backbone's unit vectors), ``centred`` and ``whitened`` (training-free: mean
removal and PCA whitening fitted on the gallery's raw features), and ``adapted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dinosearch.adapt.vectors import l2_normalize
from dinosearch.core import metrics
from dinosearch.core.metrics import headline_k
from dinosearch.core.ranking import Side, eligibility, rank_exact
from dinosearch.evaluate.baselines import baseline_vectors
from dinosearch.evaluate.bootstrap import bootstrap
from dinosearch.evaluate.config import KS, N_BOOT

BASELINES = ("raw", "centred", "whitened")


def per_query_metrics(
    vectors: dict[str, np.ndarray],
    query_rows: np.ndarray,
    gallery_rows: np.ndarray,
    query: Side,
    gallery: Side,
    ks: Sequence[int],
    *,
    within_strata: bool = False,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Rank each method → ({method: {metric@k: (Q,)}}, {n_relevant, n_eligible, chance})."""
    kmax = max(ks)
    n_rel, n_elig = eligibility(query, gallery, within_strata=within_strata)
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, vecs in vectors.items():
        ranked = rank_exact(
            vecs[query_rows], vecs[gallery_rows], kmax, query, gallery, within_strata=within_strata
        )
        values = metrics.retrieval_metrics(ranked, query.labels, gallery.labels, n_rel, ks)
        if query.strata is not None and gallery.strata is not None and not within_strata:
            same = np.where(
                ranked >= 0, gallery.strata[np.maximum(ranked, 0)] == query.strata[:, None], False
            )
            for k in ks:
                values[f"same_stratum@{k}"] = same[:, :k].sum(axis=1) / k
        out[name] = values
    with np.errstate(invalid="ignore", divide="ignore"):
        chance = np.where(n_elig > 0, n_rel / np.maximum(n_elig, 1), np.nan)
    return out, {"n_relevant": n_rel, "n_eligible": n_elig, "chance_precision": chance}


def evaluate(
    raw_features: np.ndarray,
    adapted: np.ndarray,
    labels: Sequence[object],
    *,
    ids: Sequence[object] | None = None,
    groups: Sequence[object] | None = None,
    strata: Sequence[object] | None = None,
    query_mask: np.ndarray | None = None,
    ks: Sequence[int] = KS,
    n_boot: int = N_BOOT,
    seed: int = 0,
    whiten_dim: int | None = None,
) -> dict[str, Any]:
    """The full A/B: raw, centred, whitened and adapted vectors of the same N rows.

    Args:
        raw_features: (N, D) backbone features (or raw unit vectors) of every row.
        adapted: (N, D') adapted unit vectors, row i = the same item as raw row i.
        labels: N labels (``"a|b"`` for multi-label); rows without a label are neither queries
            nor gallery.
        ids, groups, strata: N values each; groups exclude same-group items; strata add a
            per-stratum table and a within-stratum protocol.
        query_mask: (N,) bool; None = leave-one-out, else these rows query the others.
    Returns:
        A JSON-ready dict: protocol, counts, ``overall`` (bootstrap summaries), ``per_label``,
        ``strata`` (when given), ``curves`` inputs.
    """
    raw_features, adapted, ks = _checked(raw_features, adapted, labels, ks)
    n = len(raw_features)
    indicator, names = metrics.label_indicator(labels)
    query_rows, gallery_rows = _query_and_gallery_rows(
        np.asarray(indicator.any(axis=1)), query_mask
    )
    side = _side(n, indicator, ids, groups, strata)
    query, gallery = side.take(query_rows), side.take(gallery_rows)
    vectors = baseline_vectors(raw_features, gallery_rows, whiten_dim=whiten_dim)
    vectors["adapted"] = l2_normalize(adapted)
    protocol = "leave-one-out" if query_mask is None else "query-set-vs-gallery"
    return _report(
        vectors, query_rows, gallery_rows, query, gallery, ks, names, protocol, n_boot, seed
    )


def _report(
    vectors: dict[str, np.ndarray],
    query_rows: np.ndarray,
    gallery_rows: np.ndarray,
    query: Side,
    gallery: Side,
    ks: list[int],
    names: list[str],
    protocol: str,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Rank every method's (N, D) vectors, then ``evaluate``'s JSON-ready result."""
    comparisons = [("adapted", b) for b in BASELINES]
    per_q, extras = per_query_metrics(vectors, query_rows, gallery_rows, query, gallery, ks)
    result: dict[str, Any] = {
        "protocol": protocol,
        "ks": ks,
        "methods": list(vectors),
        "labels": names,
        "queries": len(query_rows),
        "gallery": len(gallery_rows),
        "query_groups": int(len(set(query.groups.tolist()))) if query.groups is not None else None,
        "queries_without_relevant": int((extras["n_relevant"] == 0).sum()),
        "chance_precision": metrics.nanmean(extras["chance_precision"]),
        "overall": bootstrap(per_q, query.groups, comparisons, n_boot=n_boot, seed=seed),
        "per_label": {m: metrics.per_label(v, query.labels, names) for m, v in per_q.items()},
    }
    if query.strata is not None:
        result["strata"] = _strata_report(
            vectors,
            query_rows,
            gallery_rows,
            query,
            gallery,
            ks,
            per_q,
            extras,
            comparisons,
            names,
            n_boot=n_boot,
            seed=seed,
        )
    return result


def _checked(
    raw_features: np.ndarray, adapted: np.ndarray, labels: Sequence[object], ks: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(raw (N, D), adapted (N, D') float32, sorted unique ks), or ValueError on mismatched rows/ks."""
    raw_features, adapted = np.asarray(raw_features), np.asarray(adapted, dtype=np.float32)
    n = len(raw_features)
    if len(adapted) != n or len(labels) != n:
        raise ValueError(
            f"rows differ: raw {n}, adapted {len(adapted)}, labels {len(labels)}; "
            "use two indexes built from the same features"
        )
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"k values must be positive integers, got {ks}")
    return raw_features, adapted, ks


def _side(
    n: int,
    indicator: np.ndarray,
    ids: Sequence[object] | None,
    groups: Sequence[object] | None,
    strata: Sequence[object] | None,
) -> Side:
    """All N rows as one ``Side``: ids (row numbers when None), (N, L) labels, groups, strata."""
    return Side(
        np.asarray(ids if ids is not None else np.arange(n)).astype(str),
        indicator,
        None if groups is None else np.asarray(groups, dtype=object),
        None if strata is None else np.asarray(strata, dtype=object).astype(str),
    )


def _query_and_gallery_rows(
    labelled: np.ndarray, query_mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(queries, gallery) row numbers among the labelled (N,) rows: leave-one-out when no mask."""
    if query_mask is None:
        query_rows = gallery_rows = np.flatnonzero(labelled)
    else:
        query_mask = np.asarray(query_mask, dtype=bool)
        query_rows = np.flatnonzero(query_mask & labelled)
        gallery_rows = np.flatnonzero(~query_mask & labelled)
    if len(query_rows) == 0 or len(gallery_rows) == 0:
        raise ValueError(
            f"no labelled {'queries' if len(query_rows) == 0 else 'gallery items'}: "
            "check --label-column and the query selection"
        )
    return query_rows, gallery_rows


def _strata_report(
    vectors: dict[str, np.ndarray],
    query_rows: np.ndarray,
    gallery_rows: np.ndarray,
    query: Side,
    gallery: Side,
    ks: Sequence[int],
    per_q: dict[str, dict[str, np.ndarray]],
    extras: dict[str, np.ndarray],
    comparisons: Sequence[tuple[str, str]],
    names: Sequence[str],
    *,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Per-stratum table plus the within-stratum protocol (gallery = the query's own stratum).

    ``source_only_chance`` is the precision of a retriever that recognises only the stratum
    (e.g. the source collection) and picks at random inside it: when it is far above
    ``chance_precision``, the labels are confounded with the strata.
    """
    assert query.strata is not None
    k = headline_k(ks)
    within, within_x = per_query_metrics(
        vectors, query_rows, gallery_rows, query, gallery, ks, within_strata=True
    )
    source_only = within_x["chance_precision"]
    rows = []
    for stratum in sorted(set(query.strata.tolist())):
        sel = query.strata == stratum
        rows.append(
            {
                "stratum": stratum,
                "queries": int(sel.sum()),
                "label_queries": {
                    name: int(c)
                    for name, c in zip(names, query.labels[sel].sum(axis=0), strict=True)
                    if c
                },
                "chance_precision": metrics.nanmean(extras["chance_precision"][sel]),
                "source_only_chance": metrics.nanmean(source_only[sel]),
                "methods": {
                    m: {
                        f"precision@{k}": metrics.nanmean(per_q[m][f"precision@{k}"][sel]),
                        f"same_stratum@{k}": metrics.nanmean(per_q[m][f"same_stratum@{k}"][sel]),
                        f"within_precision@{k}": metrics.nanmean(within[m][f"precision@{k}"][sel]),
                    }
                    for m in vectors
                },
            }
        )
    return {
        "k": k,
        "source_only_chance": metrics.nanmean(source_only),
        "within": {
            "queries_without_relevant": int((within_x["n_relevant"] == 0).sum()),
            "overall": bootstrap(within, query.groups, comparisons, n_boot=n_boot, seed=seed),
        },
        "per_stratum": rows,
    }
