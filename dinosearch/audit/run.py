"""The audit job: index + images → duplicates, leaks, conflicts, outliers → a report folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinosearch.audit import findings as F
from dinosearch.audit.calibrate import Calibration, Embed, calibrate, plant_scores
from dinosearch.audit.config import AuditConfig
from dinosearch.audit.pairs import (
    concat,
    embedding_pairs,
    exact_pairs,
    neighbours,
    pairs_above,
    unique_pairs,
)
from dinosearch.audit.pixels import aligned_score, pixel_signals
from dinosearch.audit.report import AuditResult, write_report
from dinosearch.core.columns import resolve_column
from dinosearch.index.handle import IndexHandle, open_index

SPLIT = "split"
MAX_DISTINCT_ABOVE = 0.05  # an embedding threshold flagging more films than this does not separate


def _columns(meta: pd.DataFrame, config: AuditConfig) -> dict[str, str | None]:
    cols = list(meta.columns)
    split = config.split_column
    if split is None:
        split = SPLIT if SPLIT in cols else None
    elif split == "":
        split = None
    elif split not in cols:
        raise ValueError(f"--split-column {split!r} is not a metadata column; columns: {cols}")
    return {
        "label": resolve_column(cols, config.label_column, "label"),
        "group": resolve_column(cols, config.group_column, "group"),
        "source": resolve_column(cols, config.source_column, "stratify"),
        "split": split,
    }


def _embedder(handle: IndexHandle, device: str, notes: list[str]) -> Embed | None:
    """The index's query embedder (backbone + adapter), or None with a note when it cannot load."""
    import torch

    from dinosearch.search.query import QueryEmbedder

    try:
        embedder = QueryEmbedder.for_index(handle, device=torch.device(device))
    except (ValueError, FileNotFoundError, OSError) as e:
        notes.append(f"embedding not calibrated: the index's backbone did not load ({e})")
        return None
    return lambda images: embedder.embed_images(list(images))


def _calibrations(
    handle: IndexHandle, config: AuditConfig, paths: list[str], readable: np.ndarray,
    nearest: dict[str, np.ndarray], vectors: np.ndarray, notes: list[str],
) -> dict[str, Calibration]:  # fmt: skip
    rng = np.random.default_rng(config.seed)
    rows = rng.choice(readable, min(config.plant, len(readable)), replace=False)
    need_embed = config.embedding_threshold is None and len(rows) > 0
    embed = _embedder(handle, config.device, notes) if need_embed else None
    pix, emb = plant_scores(paths, list(rows), vectors, embed, config.seed)
    return {
        "pixel": calibrate("pixel", pix, config.pixel_threshold, nearest["pixel"]),
        "embedding": calibrate("embedding", emb, config.embedding_threshold, nearest["embedding"]),
    }


def _embedding_review(
    handle: IndexHandle, vectors: np.ndarray, cal: Calibration, config: AuditConfig,
    variants: np.ndarray, known: set[tuple[int, int]], notes: list[str], info: dict[str, Any],
) -> pd.DataFrame:  # fmt: skip
    """Pairs only the embedding finds (kind "embedding", with their aligned pixel score)."""
    t = cal.threshold
    if t is None:
        return pd.DataFrame()
    if not cal.given and (cal.distinct_above or 0.0) > MAX_DISTINCT_ABOVE:
        notes.append(
            f"embedding pairs left out: at the calibrated {t:.4f} the nearest other film of "
            f"{cal.distinct_above:.0%} of films scores above it, so the embedding does not tell "
            "copies from distinct films (an untrained backbone?); pass --embedding-threshold to force"
        )
        return pd.DataFrame()
    pairs, method = embedding_pairs(handle.index, vectors, t, k=config.k, chunk=config.chunk)
    info["embedding_search"] = method
    new = np.asarray([(a, b) not in known for a, b in zip(pairs[0], pairs[1], strict=True)], bool)
    a, b, s = pairs[0][new], pairs[1][new], pairs[2][new]
    table = F.pair_table(handle.metadata["id"].astype(str), (a, b, s), "embedding")
    table["pixel_score"] = [
        round(aligned_score(variants[i], variants[j]), 4) for i, j in zip(a, b, strict=True)
    ]
    return table


def run_audit(config: AuditConfig, *, log: Callable[[str], None] = print) -> AuditResult:
    """Audit the films of index ``config.index`` and write the report folder ``config.out``.

    Raises:
        FileNotFoundError / ValueError: no index there, or a column asked for is missing.
    """
    start = time.perf_counter()
    handle = open_index(config.index)
    meta = handle.metadata.reset_index(drop=True)
    cols = _columns(meta, config)
    ids = meta["id"].astype(str)
    paths = meta["path"].astype(str).tolist()
    notes: list[str] = []
    info: dict[str, Any] = {"index_version": handle.version, "random_init": handle.random_init}
    log(f"audit: reading {len(paths)} films of {config.index} …")
    pix = pixel_signals(paths)
    pix_s, pix_i = pixel_neighbours_of(pix.variants, config.k)
    vectors = handle.vectors()
    emb_s, emb_i = neighbours(handle.index, vectors, config.k, chunk=config.chunk)
    readable = np.asarray([i for i in range(len(paths)) if i not in pix.unreadable], np.int64)
    nearest = {"pixel": pix_s[:, 0], "embedding": emb_s[:, 0]}
    cal = _calibrations(handle, config, paths, readable, nearest, vectors, notes)
    exact = exact_pairs(pix.exact)
    exact_set = set(zip(exact[0].tolist(), exact[1].tolist(), strict=True))
    near = pairs_above(pix_s, pix_i, cal["pixel"].threshold or np.inf)
    keep = np.asarray(
        [p not in exact_set for p in zip(near[0].tolist(), near[1].tolist(), strict=True)], bool
    )
    near = (near[0][keep], near[1][keep], near[2][keep])
    dups = pd.concat(
        [F.pair_table(ids, exact, "exact"), F.pair_table(ids, near, "near")], ignore_index=True
    )
    known = exact_set | set(zip(near[0].tolist(), near[1].tolist(), strict=True))
    review = _embedding_review(
        handle, vectors, cal["embedding"], config, pix.variants, known, notes, info
    )
    labels = F.clusters(len(ids), unique_pairs(*concat(exact, near)))
    tables = {
        "duplicates": pd.concat([dups, review], ignore_index=True) if len(review) else dups,
        "leaks": F.leaks(meta, dups, cols["split"], cols["group"]),
        "conflicts": F.conflicts(meta, dups, cols["label"]),
        "agreement": F.agreement(meta, cols["label"], emb_i),
        "outliers": F.outliers(ids, emb_s, pix_s),
        "unreadable": pd.DataFrame(
            {"id": ids.to_numpy()[list(pix.unreadable)], "reason": list(pix.unreadable.values())}
        ),
    }
    counts = _counts(meta, cols, labels, dups, tables, len(review))
    info["seconds"] = round(time.perf_counter() - start, 1)
    info["pixel_seconds"] = round(pix.seconds, 1)
    result = AuditResult(Path(config.out), counts, cal, cols, tables, notes, info)
    manifest = (
        F.cleaned_manifest(meta, labels, tables["leaks"], cols["split"])
        if config.write_manifest
        else None
    )
    write_report(result, config, meta, labels, manifest)
    return result


def pixel_neighbours_of(variants: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from dinosearch.audit.pairs import pixel_neighbours

    return pixel_neighbours(variants, min(k, max(1, len(variants) - 1)))


def _counts(
    meta: pd.DataFrame, cols: dict[str, str | None], labels: np.ndarray, dups: pd.DataFrame,
    tables: dict[str, pd.DataFrame], review: int,
) -> dict[str, int]:  # fmt: skip
    sizes = np.bincount(labels)
    counts = {
        "films": len(meta),
        "unreadable": len(tables["unreadable"]),
        "exact_pairs": int((dups["kind"] == "exact").sum()),
        "near_pairs": int((dups["kind"] == "near").sum()),
        "embedding_only_pairs": review,
        "clusters": int((sizes > 1).sum()),
        "films_in_clusters": int(sizes[sizes > 1].sum()),
        "films_removable": int((sizes[sizes > 1] - 1).sum()),
        "leak_pairs": len(tables["leaks"]),
        "conflict_pairs": len(tables["conflicts"]),
        "outliers": int(tables["outliers"]["flagged"].sum()),
    }
    if cols["source"] is not None:
        src = meta[cols["source"]].astype(str).to_numpy()
        counts["cross_source_pairs"] = int((src[dups["a"]] != src[dups["b"]]).sum())
    return counts
