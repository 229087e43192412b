"""Stored features (+ adapter) → unit vectors → FAISS inner-product index, published as a verified version.

The version folder's files are described in ``handle.py``. The features folder is the source of
truth; an index is a cache rebuilt from it in seconds.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dinosearch.adapt.vectors import to_vectors
from dinosearch.core.columns import check_metadata_columns
from dinosearch.core.runtime import package_version
from dinosearch.core.storage import sha256_file, write_json
from dinosearch.features.folder import load_features
from dinosearch.index.choose import INDEX_TYPES, IndexType, choose_index
from dinosearch.index.handle import DATA_FILES, IndexHandle, load_index_adapter, open_index
from dinosearch.index.knn import add_vectors, train_add
from dinosearch.index.publish import next_version, publish, staging

if TYPE_CHECKING:
    from dinosearch.adapt.adapter import DomainAdapter


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
    params: dict[str, Any] | None = None,
    use_gpu: bool | None = None,
    keep: int = 3,
    name: str | None = None,
) -> IndexHandle:
    """Embed stored features (through ``adapter_dir`` when given), index them, publish a new version.

    Args:
        features_dir: a ``dinosearch embed`` output folder.
        out_dir: the index folder (``indexes/NAME``); created when absent.
        adapter_dir: a trained adapter folder, or None for the raw index.
        index_type: "flat" (exact), "ivf-flat", "ivf-pq", "hnsw", or "auto" (see ``choose_index``).
        memory_budget_gb: what the index may occupy in memory; steers "auto".
        append: add these features to the live version as a new version, keeping its vectors.
        params: overrides of the index parameters (nlist, nprobe, m, nbits, M, ef_construction, ef_search).
        use_gpu: None builds on the GPU when faiss sees one; False never; True requires one.
        keep: how many published versions to keep.

    Raises:
        ValueError: empty features, bad index type, adapter/backbone mismatch, duplicate ids on append.
        FileNotFoundError: a missing features or adapter folder.
    """
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index type {index_type!r} is not one of {', '.join(INDEX_TYPES)}")
    features_dir, out = Path(features_dir).resolve(), Path(out_dir)
    fs = load_features(features_dir)
    adapter = load_index_adapter(adapter_dir, fs.fingerprint)
    vectors = to_vectors(fs.features, adapter)  # (N, D) unit float32
    table = _metadata_table(features_dir / "metadata.parquet")
    source = {
        "path": str(features_dir),
        "images": fs.manifest.get("images"),
        "count": len(vectors),
        "checksum": fs.manifest.get("checksums", {}).get("features.npy"),
    }
    if append:
        return _append(out, vectors, table, fs.manifest["backbone"], adapter, source, keep)
    if len(vectors) == 0:
        raise ValueError(f"{features_dir} holds no vectors; embed some images first")
    kind, chosen = choose_index(
        len(vectors), vectors.shape[1], index_type, memory_budget_gb, params
    )
    index, built_on = train_add(kind, chosen, vectors, use_gpu)
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
        "dim": int(vectors.shape[1]),
        "metric": "inner_product",
        "normalized": True,
        "index_type": kind,
        "params": chosen,
        "built_on": built_on,
    }
    return _write_version(out, index, table, manifest, keep)


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
    table = pq.read_table(path)
    check_metadata_columns(table.column_names, path)
    if "label" not in table.column_names:
        table = table.append_column("label", pa.nulls(table.num_rows, pa.string()))
    return table.replace_schema_metadata(None)


def _append(
    out: Path,
    vectors: np.ndarray,
    table: pa.Table,
    backbone: dict[str, Any],
    adapter: DomainAdapter | None,
    source: dict[str, Any],
    keep: int,
) -> IndexHandle:
    """Add (N, D) ``vectors`` and their metadata rows to the live version, as a new version."""
    base = open_index(out)
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
    new_ids = table.column("id").to_pandas()
    seen = set(base.table.column("id").to_pylist())
    dupes = [i for i in new_ids[new_ids.duplicated() | new_ids.isin(seen)].unique()]
    if dupes:
        raise ValueError(
            f"{source['path']}: {len(dupes)} ids are already in {where} or repeated "
            f"(e.g. {dupes[:5]}); embed only the new images and append those"
        )
    add_vectors(base.index, vectors)
    merged = pa.concat_tables([base.table, table], promote_options="permissive")
    manifest = copy.deepcopy(base.manifest)
    manifest["appended"] = [*manifest.get("appended", []), source]
    return _write_version(out, base.index, merged, manifest, keep)


def _write_version(
    out: Path, index: faiss.Index, table: pa.Table, manifest: dict[str, Any], keep: int
) -> IndexHandle:
    """Write the version's files to staging, checksum them, publish it as ``current``."""
    with staging(out) as tmp:
        version = next_version(out)
        faiss.write_index(index, str(tmp / "index.faiss"))
        pq.write_table(table, tmp / "metadata.parquet")
        manifest = {
            **manifest,
            "version": version,
            "count": int(index.ntotal),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checksums": {n: sha256_file(tmp / n) for n in DATA_FILES},
        }
        write_json(tmp / "manifest.json", manifest)
        publish(out, tmp, version, keep=keep)
    return IndexHandle(out, version, index, table, manifest)
