"""Remove rows (by id) from an index folder: a new version without them, then every other version deleted.

How each index type loses rows (vector i stays metadata row i throughout):

    flat       faiss ``remove_ids``: the stored vectors are compacted
    ivf-flat   faiss ``remove_ids``, then the surviving entries' ids renumbered in place
    ivf-pq     the same for the PQ lists; the re-ranking copy (flat, fp16, sq8) by ``remove_ids``
    hnsw       no ``remove_ids`` in faiss: rebuilt (same parameters) from the exact vectors it stores

The manifest's features entries are re-derived from the (already rewritten) features folders, by
id, so evaluation and ``--append --skip-existing`` keep working; only the number erased is recorded.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa

from dinosearch.core.storage import pid_alive
from dinosearch.features.folder import load_features
from dinosearch.index.assemble import build_faiss
from dinosearch.index.files import write_version
from dinosearch.index.handle import IndexHandle, open_index
from dinosearch.index.publish import VERSIONS, list_versions, prune

HOW = {
    "flat": "remove_ids",
    "ivf-flat": "remove_ids + ids renumbered",
    "ivf-pq": "remove_ids + ids renumbered",
    "hnsw": "rebuilt from its stored vectors",
}
_LITTER = re.compile(r"^\.staging-(\d+)-[0-9a-f]+$")


@dataclass(frozen=True)
class IndexErasure:
    """What removing ids did to one index folder."""

    path: str
    removed: int  # rows dropped from the live version
    how: str  # see HOW ("" when no row was dropped)
    published: str | None  # the new live version, None when nothing had to change
    deleted_versions: tuple[str, ...]  # older versions deleted (they held the rows)


def erase_from_index(index_dir: str | Path, ids: Collection[str]) -> IndexErasure:
    """Publish ``index_dir``'s live version without the rows whose id is in ``ids``; delete the rest.

    Run after the features folders it names were rewritten (``features.erase.drop_rows``): their
    new counts and checksums go into the manifest. A re-run after a kill completes the job.
    """
    out = Path(index_dir)
    before = list_versions(out)
    base = open_index(out)
    wanted = {str(i) for i in ids}
    drop = base.table.column("id").to_pandas().astype(str).isin(wanted).to_numpy()  # (N,) bool
    kind = str(base.manifest["index_type"])
    manifest = copy.deepcopy(base.manifest)
    segments = _segments(manifest, ~drop, base.table)
    changed = _resync_sources(manifest, segments)
    published = None
    if drop.any() or changed:
        index = drop_vectors(base, np.flatnonzero(drop)) if drop.any() else base.index
        if drop.any():
            manifest["erased"] = int(manifest.get("erased", 0)) + int(drop.sum())
            manifest["modified"] = datetime.now(UTC).isoformat(timespec="seconds")
        table = base.table.filter(pa.array(~drop))
        published = write_version(out, index, table, manifest, keep=1, base=base.version).version
    scrub_versions(out)
    deleted = tuple(v for v in before if v not in list_versions(out))
    return IndexErasure(
        str(out), int(drop.sum()), HOW[kind] if drop.any() else "", published, deleted
    )


def drop_vectors(handle: IndexHandle, rows: np.ndarray) -> faiss.Index:
    """``handle``'s FAISS index without vector ids ``rows`` (sorted (r,) int64); the rest renumbered."""
    index, kind = handle.index, handle.manifest["index_type"]
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if kind == "hnsw":
        keep = np.setdiff1d(np.arange(index.ntotal), rows)
        vectors = index.reconstruct_n(0, index.ntotal)[keep]  # HNSW,Flat stores them exactly
        empty = np.empty((0, index.d), np.float32)
        params = handle.manifest["params"]
        rebuilt, _ = build_faiss(
            "hnsw", params, index.d, empty, lambda: iter([vectors]), use_gpu=False
        )
        return rebuilt
    if isinstance(index, faiss.IndexRefine):
        _remove_ivf(faiss.downcast_index(index.base_index), rows)
        refine = faiss.downcast_index(index.refine_index)
        refine.remove_ids(_selector(rows))  # flat codes: compacted in order
        index.ntotal = refine.ntotal
    elif isinstance(index, faiss.IndexIVF):
        _remove_ivf(index, rows)
    else:
        index.remove_ids(_selector(rows))  # flat: compacted in order
    if index.ntotal != handle.count - len(rows):
        raise AssertionError(f"{handle.version_dir}: removal left {index.ntotal} vectors")
    return index


def _selector(rows: np.ndarray) -> faiss.IDSelector:
    """A selector of the sorted (r,) int64 ``rows`` (it reads them: keep ``rows`` alive meanwhile)."""
    return faiss.IDSelectorBatch(len(rows), faiss.swig_ptr(rows))


def _remove_ivf(index: Any, rows: np.ndarray) -> None:
    """IVF ``remove_ids`` keeps the other entries' ids: shift each down past the removed ones."""
    index.make_direct_map(False)  # no id → entry map: it would go stale
    index.remove_ids(_selector(rows))
    lists: Any = index.invlists
    size = index.code_size
    for lst in range(index.nlist):
        n = lists.list_size(lst)
        if n == 0:
            continue
        old = faiss.rev_swig_ptr(lists.get_ids(lst), n).copy()
        codes = faiss.rev_swig_ptr(lists.get_codes(lst), n * size).copy()
        new = np.ascontiguousarray(old - np.searchsorted(rows, old), dtype=np.int64)
        lists.update_entries(lst, 0, n, faiss.swig_ptr(new), faiss.swig_ptr(codes))


def _segments(
    manifest: dict[str, Any], keep: np.ndarray, table: pa.Table
) -> list[tuple[dict[str, Any], pd.Series]]:
    """Each features entry of ``manifest`` (first, then appended) with the ids of its rows kept."""
    sources = [manifest["features"], *manifest.get("appended", [])]
    ids = table.column("id").to_pandas().astype(str)
    out, start = [], 0
    for src in sources:
        if "rows" in src:
            n = sum(b - a for a, b in src["rows"])
        else:
            n = int(src["count"] if src is manifest["features"] else src["added"])
        part = slice(start, start + n)
        out.append((src, ids.iloc[part][keep[part]]))
        start += n
    if start != len(ids):
        raise ValueError(
            f"{manifest.get('name')}: its features entries account for {start} rows, the index "
            f"holds {len(ids)}; rebuild the index with `dinosearch index`"
        )
    return out


def _resync_sources(manifest: dict[str, Any], segments: list[tuple[dict, pd.Series]]) -> bool:
    """Point each features entry at its folder as it is now (rows found by id); True if any changed."""
    changed = False
    for src, ids in segments:
        fs = load_features(src["path"])
        where = pd.Series(np.arange(len(fs.metadata)), index=fs.metadata["id"].astype(str))
        rows = where.reindex(ids).to_numpy(dtype=np.float64)
        if np.isnan(rows).any():
            raise ValueError(
                f"{src['path']} lacks {int(np.isnan(rows).sum())} rows this index holds; "
                "rebuild the index from it with `dinosearch index`"
            )
        new = {
            "images": fs.manifest.get("images"),
            "count": len(fs.features),
            "checksum": fs.manifest.get("checksums", {}).get("features.npy"),
        }
        rows_i = rows.astype(np.int64)
        whole = len(rows_i) == len(fs.features) and bool((rows_i == np.arange(len(rows_i))).all())
        if "rows" in src or not whole:
            new["rows"] = _ranges(rows_i) if len(rows_i) else []
        if "added" in src:
            new["added"] = len(rows_i)
        before = dict(src)
        src.update(new)
        changed |= src != before
    return changed


def _ranges(rows: np.ndarray) -> list[list[int]]:
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    return [[int(r[0]), int(r[-1]) + 1] for r in np.split(rows, breaks)]


def scrub_versions(index_dir: str | Path) -> list[str]:
    """Delete every version but the live one, half-deleted versions and dead builders' staging."""
    root = Path(index_dir)
    deleted = prune(root, keep=1) if list_versions(root) else []
    versions = root / VERSIONS
    for p in versions.glob(".*.deleting") if versions.is_dir() else ():
        shutil.rmtree(p, ignore_errors=True)
    for p in root.iterdir():
        m = _LITTER.match(p.name)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
    return deleted
