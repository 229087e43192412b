"""Stored features (+ adapter) → unit vectors → FAISS inner-product index, published as a verified version.

Each version folder (``INDEX_DIR/versions/<v>/``, see ``publish.py``) holds::

    index.faiss       FAISS CPU index of N unit vectors; vector i is metadata row i
    metadata.parquet  id, path, label and every features metadata column; row i is vector i
    manifest.json     backbone, adapter, features, dim, metric, index type and params, count, checksums

The features folder is the source of truth; an index is a cache rebuilt from it in seconds.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dinosearch.adapt.vectors import to_vectors
from dinosearch.core.runtime import package_version
from dinosearch.core.storage import read_json, sha256_file, write_json
from dinosearch.features.folder import load_features
from dinosearch.index.knn import add_vectors, search_index, train_add
from dinosearch.index.publish import VERSIONS, current_version, next_version, publish, staging

if TYPE_CHECKING:
    from dinosearch.adapt.adapter import DomainAdapter

IndexType = Literal["auto", "flat", "ivf-flat", "ivf-pq", "hnsw"]
INDEX_TYPES = ("auto", "flat", "ivf-flat", "ivf-pq", "hnsw")
EXACT_MAX = 250_000  # "auto" searches exactly up to here: a flat scan of 250k × 384-d is a few ms
EXACT_STORAGE = ("flat", "ivf-flat", "hnsw")  # index types that keep the vectors themselves
DATA_FILES = ("index.faiss", "metadata.parquet")


@dataclass
class IndexHandle:
    """One opened index version: the FAISS index, its row-aligned metadata and its manifest."""

    path: Path  # INDEX_DIR (the folder holding ``current`` and ``versions/``)
    version: str
    index: faiss.Index  # CPU index; vector i ↔ metadata row i
    table: pa.Table  # metadata as Arrow, for fast ``take`` of hit rows
    manifest: dict[str, Any]
    _metadata: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def version_dir(self) -> Path:
        return self.path / VERSIONS / self.version

    @property
    def metadata(self) -> pd.DataFrame:
        """All N metadata rows as pandas (converted once, on first use)."""
        if self._metadata is None:
            self._metadata = self.table.to_pandas()
        return self._metadata

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def random_init(self) -> bool:
        """True when the backbone behind these vectors was randomly initialised (untrained)."""
        return bool(self.manifest["backbone"].get("random_init", False))

    @property
    def fingerprint(self) -> str:
        """How the vectors were made: backbone fingerprint + adapter fingerprint (or "raw")."""
        return str(self.manifest["vectors_fingerprint"])

    def rows(self, ids: np.ndarray) -> pd.DataFrame:
        """Metadata rows of vector ``ids`` (k,), in that order; only those rows are converted."""
        return self.table.take(pa.array(np.asarray(ids, dtype=np.int64))).to_pandas()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, D) unit queries → scores (B, k), ids (B, k); exact Flat runs as one numpy matmul."""
        return search_index(self.index, queries, k)

    def vectors(self) -> np.ndarray:
        """All (N, D) float32 unit vectors: read back from FAISS, or recomputed when it stores codes."""
        if self.manifest["index_type"] in EXACT_STORAGE:
            if isinstance(self.index, faiss.IndexIVF):
                self.index.make_direct_map()
            return self.index.reconstruct_n(0, self.index.ntotal)
        return recompute_vectors(self.manifest)


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
    adapter_info = (
        None
        if adapter is None
        else {
            "fingerprint": adapter.fingerprint,
            "path": str(Path(adapter_dir).resolve()),  # type: ignore[arg-type]
            "backbone_fingerprint": adapter.backbone_fingerprint,
        }
    )
    manifest = {
        "kind": "index",
        "name": name or out.resolve().name,
        "dinosearch_version": package_version(),
        "backbone": fs.manifest["backbone"],
        "adapter": adapter_info,
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


def choose_index(
    n: int,
    dim: int,
    index_type: IndexType = "auto",
    memory_budget_gb: float = 8.0,
    params: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Pick the index type and its parameters for ``n`` vectors of ``dim``.

    "auto": exact Flat up to ``EXACT_MAX`` vectors (when they fit the budget), IVF-Flat above it while
    the raw vectors fit, IVF-PQ (compressed codes) when they do not. HNSW is never picked automatically:
    its graph build is slow on few cores; name it when query latency matters most.
    """
    flat_bytes, budget = n * dim * 4, memory_budget_gb * 2**30
    kind = index_type
    if kind == "auto":
        kind = (
            "flat"
            if n <= EXACT_MAX and flat_bytes <= budget
            else ("ivf-flat" if flat_bytes * 1.1 <= budget else "ivf-pq")
        )
    chosen: dict[str, Any] = {}
    if kind.startswith("ivf"):
        nlist = 2 ** round(math.log2(max(1.0, math.sqrt(n))))  # ~√n lists, a power of two
        nlist = max(1, min(nlist, n // 39))  # ≥ 39 training points per list
        chosen = {"nlist": nlist, "niter": 10, "nprobe": min(nlist, max(8, nlist // 32))}
    if kind == "ivf-pq":
        chosen.update(m=_pq_m(dim, n, budget), nbits=8)
    if kind == "hnsw":
        chosen = {"M": 32, "ef_construction": 80, "ef_search": 64}
    chosen.update(params or {})
    return kind, chosen


def _pq_m(dim: int, n: int, budget: float) -> int:
    """Sub-quantizers: ~4 dims each when the budget allows, fewer bytes otherwise; must divide dim."""
    divisors = [m for m in range(1, dim + 1) if dim % m == 0 and m <= 96]
    fits = [m for m in divisors if n * (m + 8) <= budget and dim // m >= 4]
    return max(fits) if fits else min(divisors)


def _metadata_table(path: Path) -> pa.Table:
    table = pq.read_table(path)
    if "label" not in table.column_names:
        table = table.append_column("label", pa.nulls(table.num_rows, pa.string()))
    return table.replace_schema_metadata(None)


def load_index_adapter(
    adapter_dir: str | Path | None, backbone_fingerprint: str
) -> DomainAdapter | None:
    """The adapter at ``adapter_dir`` (None → None), refused if trained on another backbone."""
    if adapter_dir is None:
        return None
    from dinosearch.adapt.adapter import load_adapter

    return load_adapter(adapter_dir, backbone_fingerprint=backbone_fingerprint)


def _append(
    out: Path,
    vectors: np.ndarray,
    table: pa.Table,
    backbone: dict[str, Any],
    adapter: DomainAdapter | None,
    source: dict[str, Any],
    keep: int,
) -> IndexHandle:
    base = open_index(out)
    where = base.version_dir / "manifest.json"
    if backbone["fingerprint"] != base.manifest["backbone"]["fingerprint"]:
        raise ValueError(
            f"cannot append features of backbone {backbone['fingerprint']!r} to {where}, "
            f"made with {base.manifest['backbone']['fingerprint']!r}; re-embed with that backbone"
        )
    had = (base.manifest.get("adapter") or {}).get("fingerprint")
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


def open_index(
    index_dir: str | Path, *, version: str | None = None, verify: bool = True
) -> IndexHandle:
    """Open the live (or a named) version; check counts, dimension and (with ``verify``) checksums.

    Raises:
        FileNotFoundError: no index there, or a version file is missing.
        ValueError: a file disagrees with manifest.json (the message names it): rebuild the index.
    """
    root = Path(index_dir)
    for attempt in range(3):  # a concurrent publish may prune the version we just resolved
        v = version or current_version(root)
        try:
            return _open_version(root, v, verify)
        except FileNotFoundError:
            if version or attempt == 2 or current_version(root) == v:
                raise
    raise AssertionError("unreachable")


def _open_version(root: Path, version: str, verify: bool) -> IndexHandle:
    vdir = root / VERSIONS / version
    manifest_path = vdir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{manifest_path} is missing; rebuild the index with `dinosearch index`"
        )
    manifest = read_json(manifest_path)
    if manifest.get("kind") != "index":
        raise ValueError(
            f"{manifest_path} is not an index manifest (kind {manifest.get('kind')!r})"
        )
    for name in DATA_FILES:
        path = vdir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; rebuild the index with `dinosearch index`")
        if verify and sha256_file(path) != manifest["checksums"][name]:
            raise ValueError(
                f"{path}: checksum differs from {manifest_path}; the file is corrupt or "
                "was altered: rebuild the index with `dinosearch index`"
            )
    try:
        index = faiss.read_index(str(vdir / "index.faiss"))
        table = pq.read_table(vdir / "metadata.parquet", memory_map=True)
    except Exception as e:  # faiss raises RuntimeError, Arrow its own errors
        raise ValueError(
            f"{vdir}: cannot read the index files ({type(e).__name__}: {e}); rebuild"
        ) from e
    count, dim = int(manifest["count"]), int(manifest["dim"])
    if index.ntotal != count or index.d != dim:
        raise ValueError(
            f"{vdir / 'index.faiss'}: {index.ntotal} vectors of {index.d}-d, "
            f"{manifest_path} says {count} of {dim}-d; rebuild the index"
        )
    if table.num_rows != count:
        raise ValueError(
            f"{vdir / 'metadata.parquet'}: {table.num_rows} rows, {manifest_path} says {count}"
        )
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(f"{vdir / 'index.faiss'}: not an inner-product index; rebuild the index")
    return IndexHandle(root, version, index, table, manifest)


def recompute_vectors(manifest: dict[str, Any]) -> np.ndarray:
    """(N, D) unit vectors rebuilt from the features folders and adapter an index manifest names."""
    adapter_info: dict[str, Any] | None = manifest.get("adapter")
    backbone_fp = manifest["backbone"]["fingerprint"]
    adapter = None
    if adapter_info is not None:
        adapter = load_index_adapter(adapter_info["path"], backbone_fp)
        if adapter is not None and adapter.fingerprint != adapter_info["fingerprint"]:
            raise ValueError(
                f"adapter at {adapter_info['path']} is now {adapter.fingerprint}, the index "
                f"was built with {adapter_info['fingerprint']}; rebuild the index"
            )
    chunks = []
    for src in [manifest["features"], *manifest.get("appended", [])]:
        fs = load_features(src["path"])
        if fs.manifest.get("images") != src["images"] or len(fs.features) != src["count"]:
            raise ValueError(
                f"{src['path']}/manifest.json: features changed since the index was built; "
                "rebuild the index"
            )
        chunks.append(to_vectors(fs.features, adapter))
    return np.concatenate(chunks)
