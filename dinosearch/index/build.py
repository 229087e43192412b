"""Stored features (+ adapter) → unit vectors → FAISS inner-product index, published as a verified version.

The version folder's files are described in ``handle.py``. The features folder is the source of
truth; an index is a cache rebuilt from it in seconds. The features are read chunk by chunk from
the memory-mapped ``features.npy``; quantizers are trained on a sample, so only the index itself
must fit in memory.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dinosearch.adapt.adapter import load_adapter
from dinosearch.adapt.vectors import to_vectors
from dinosearch.core.columns import check_metadata_columns
from dinosearch.core.lock import writing
from dinosearch.core.runtime import package_version
from dinosearch.features.folder import FeatureSet, load_features
from dinosearch.index.assemble import Chunks, build_faiss, train_size
from dinosearch.index.choose import choose_index, estimate_bytes
from dinosearch.index.config import INDEX_TYPES, IndexType
from dinosearch.index.files import concat_rows, write_version
from dinosearch.index.handle import IndexHandle, open_index
from dinosearch.index.knn import add_vectors, sample

if TYPE_CHECKING:
    from dinosearch.adapt.adapter import DomainAdapter


CHUNK = 65_536  # vectors per chunk read, adapted and added: 96 MiB of 384-d float32


def vectors_fingerprint(backbone_fingerprint: str, adapter_fingerprint: str | None) -> str:
    return f"{backbone_fingerprint}+{adapter_fingerprint or 'raw'}"


def build_index(
    features_dir: str | Path,
    out_dir: str | Path,
    *,
    adapter_dir: str | Path | None = None,
    index_type: IndexType = "auto",
    memory_budget_gb: float = 8.0,
    append: bool = False,
    skip_existing: bool = False,
    params: dict[str, Any] | None = None,
    use_gpu: bool | None = None,
    keep: int = 3,
    name: str | None = None,
    config: dict[str, Any] | None = None,
) -> IndexHandle:
    """Embed stored features (through ``adapter_dir`` when given), index them, publish a new version.

    Args:
        features_dir: a ``dinosearch embed`` output folder.
        out_dir: the index folder (``indexes/NAME``); created when absent.
        adapter_dir: a trained adapter folder, or None for the raw index.
        index_type: "flat" (exact), "ivf-flat", "ivf-pq", "hnsw", or "auto" (see ``choose_index``).
        memory_budget_gb: what the index may occupy in memory; steers "auto" and IVF-PQ's re-ranking.
        append: add these features to the live version as a new version, keeping its vectors.
        skip_existing: with ``append``, leave out ids the index already holds instead of refusing.
        params: overrides of the index parameters (nlist, nprobe, m, nbits, refine, k_factor, M,
            ef_construction, ef_search).
        use_gpu: None builds on the GPU when faiss sees one; False never; True requires one.
        keep: how many published versions to keep.
        config: the job's settings (``core.config.job_record``), recorded in manifest.json
            (a new index only; an append keeps the first build's).

    Raises:
        ValueError: empty features, bad index type, adapter/backbone mismatch, duplicate ids on append.
        FileNotFoundError: a missing features or adapter folder.
    """
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index type {index_type!r} is not one of {', '.join(INDEX_TYPES)}")
    out = Path(out_dir)
    fs, adapter, table, source = _load_inputs(Path(features_dir).resolve(), adapter_dir)
    with writing(out, "index --append" if append else "index"):
        if append:
            return _append(out, fs, table, adapter, source, keep, skip_existing)
        return _build_new(
            fs,
            out,
            table,
            adapter,
            adapter_dir,
            source,
            index_type,
            memory_budget_gb,
            params,
            use_gpu,
            keep,
            name,
            config,
        )


def _load_inputs(
    features_dir: Path, adapter_dir: str | Path | None
) -> tuple[FeatureSet, DomainAdapter | None, pa.Table, dict[str, Any]]:
    """Load the features (vectors memory-mapped, rows as Arrow), the adapter, and the source record."""
    fs = load_features(features_dir, metadata=False)  # rows come from Parquet as Arrow below
    adapter = (
        None
        if adapter_dir is None
        else load_adapter(adapter_dir, backbone_fingerprint=fs.fingerprint)
    )
    table = _metadata_table(features_dir / "metadata.parquet")
    source = {
        "path": str(features_dir),
        "images": fs.manifest.get("images"),
        "count": len(fs.features),
        "checksum": fs.manifest.get("checksums", {}).get("features.npy"),
    }
    return fs, adapter, table, source


def _build_new(
    fs: FeatureSet,
    out: Path,
    table: pa.Table,
    adapter: DomainAdapter | None,
    adapter_dir: str | Path | None,
    source: dict[str, Any],
    index_type: IndexType,
    memory_budget_gb: float,
    params: dict[str, Any] | None,
    use_gpu: bool | None,
    keep: int,
    name: str | None,
    config: dict[str, Any] | None,
) -> IndexHandle:
    """A fresh index of all of ``fs``'s vectors, published as the next version (lock held)."""
    features_dir = Path(source["path"])
    if len(fs.features) == 0:
        raise ValueError(f"{features_dir} holds no vectors; embed some images first")
    dim = adapter.out_dim if adapter is not None else int(fs.features.shape[1])
    kind, chosen = choose_index(len(fs.features), dim, index_type, memory_budget_gb, params)
    train = to_vectors(sample(fs.features, train_size(kind, chosen, len(fs.features))), adapter)
    index, built_on = build_faiss(
        kind, chosen, dim, train, vector_chunks(fs.features, adapter), use_gpu
    )
    del train
    manifest = {
        "kind": "index",
        "name": name or out.resolve().name,
        "dinosearch_version": package_version(),
        "backbone": fs.manifest["backbone"],
        "adapter": _adapter_info(adapter, adapter_dir),
        "vectors_fingerprint": vectors_fingerprint(
            fs.fingerprint, adapter.fingerprint if adapter is not None else None
        ),
        "features": source,
        "appended": [],
        "dim": int(dim),
        "metric": "inner_product",
        "normalized": True,
        "index_type": kind,
        "params": chosen,
        "estimated_memory_gb": round(estimate_bytes(kind, index.ntotal, dim, chosen) / 2**30, 3),
        "built_on": built_on,
        **({"config": config} if config else {}),
    }
    return write_version(out, index, table, manifest, keep)


def vector_chunks(
    features: np.ndarray,
    adapter: DomainAdapter | None,
    rows: np.ndarray | None = None,
    chunk: int = CHUNK,
) -> Chunks:
    """Passes over (n, D) features (a memmap; only ``rows`` when given) as unit-vector chunks."""

    def passes() -> Iterator[np.ndarray]:
        n = len(features) if rows is None else len(rows)
        for start in range(0, n, chunk):
            part = (
                features[start : start + chunk]
                if rows is None
                else features[rows[start : start + chunk]]
            )
            yield to_vectors(part, adapter)  # (c, D') unit float32

    return passes


def _adapter_info(
    adapter: DomainAdapter | None, adapter_dir: str | Path | None
) -> dict[str, Any] | None:
    """The manifest's "adapter" entry: where it is and what it is (None for a raw index)."""
    if adapter is None or adapter_dir is None:
        return None
    return {
        "fingerprint": adapter.fingerprint,
        "path": str(Path(adapter_dir).resolve()),
        "backbone_fingerprint": adapter.backbone_fingerprint,
    }


def _metadata_table(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path}: unreadable ({e}); re-run `dinosearch embed`") from e
    check_metadata_columns(table.column_names, path)
    if "label" not in table.column_names:
        table = table.append_column("label", pa.nulls(table.num_rows, pa.string()))
    return table.replace_schema_metadata(None)


def _append(
    out: Path,
    fs: FeatureSet,
    table: pa.Table,
    adapter: DomainAdapter | None,
    source: dict[str, Any],
    keep: int,
    skip_existing: bool,
) -> IndexHandle:
    """Add the (N, D) ``fs.features``' vectors and metadata rows to the live version, as a new
    version; with ``skip_existing`` only the rows whose ids it lacks (none: the live version is
    returned)."""
    features, backbone = fs.features, fs.manifest["backbone"]
    base = open_index(out)  # read under the writer lock: the version this append builds on
    _check_same_vectors(base, backbone, adapter)
    rows = _new_rows(base, table, source["path"], skip_existing)
    if rows is not None:
        if len(rows) == 0:
            return base
        table = table.take(pa.array(rows))
        source = {**source, "rows": _ranges(rows)}
    for chunk in vector_chunks(features, adapter, rows)():
        add_vectors(base.index, chunk)
    merged = concat_rows(base, table, source["path"])
    manifest = copy.deepcopy(base.manifest)
    manifest["appended"] = [*manifest.get("appended", []), {**source, "added": table.num_rows}]
    return write_version(out, base.index, merged, manifest, keep, base=base.version)


def _check_same_vectors(
    base: IndexHandle, backbone: dict[str, Any], adapter: DomainAdapter | None
) -> None:
    """Refuse to append vectors of another backbone or adapter than ``base``'s."""
    where = base.manifest_path
    if backbone["fingerprint"] != base.backbone_fingerprint:
        raise ValueError(
            f"cannot append features of backbone {backbone['fingerprint']!r} to {where}, "
            f"made with {base.backbone_fingerprint!r}; re-embed with that backbone"
        )
    had = base.adapter_fingerprint
    if had != (adapter and adapter.fingerprint):
        raise ValueError(
            f"cannot append vectors of adapter {adapter and adapter.fingerprint} to {where}, "
            f"built with adapter {had} ({(base.manifest.get('adapter') or {}).get('path')}); "
            "pass the same --adapter (or none for a raw index), or rebuild"
        )


def _new_rows(
    base: IndexHandle, table: pa.Table, path: str, skip_existing: bool
) -> np.ndarray | None:
    """Rows of ``table`` whose ids ``base`` lacks (None: all of them); repeats are refused."""
    new_ids = table.column("id").to_pandas()
    present = new_ids.isin(set(base.table.column("id").to_pylist())).to_numpy()
    repeated = new_ids[new_ids.duplicated()].unique().tolist()
    dupes = repeated if skip_existing else new_ids[present].unique().tolist() + repeated
    if dupes:
        raise ValueError(
            f"{path}: {len(dupes)} ids are already in {base.manifest_path} or repeated "
            f"(e.g. {dupes[:5]}); embed only the new images and append those, or pass --skip-existing"
        )
    return np.flatnonzero(~present) if skip_existing and present.any() else None


def _ranges(rows: np.ndarray) -> list[list[int]]:
    """Sorted row numbers → [[start, stop), …] runs (the manifest's record of what was added)."""
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    return [[int(r[0]), int(r[-1]) + 1] for r in np.split(rows, breaks)]
