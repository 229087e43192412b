"""An opened index version: FAISS index, row-aligned metadata and manifest, verified on open.

Each version folder (``INDEX_DIR/versions/<v>/``, see ``publish.py``) holds::

    index.faiss       FAISS CPU index of N unit vectors; vector i is metadata row i
    metadata.parquet  id, path, label and every features metadata column; row i is vector i
    manifest.json     backbone, adapter, features, dim, metric, index type and params, count, checksums
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dinosearch.adapt.vectors import to_vectors
from dinosearch.core.fields import Kind, check_fields
from dinosearch.core.storage import read_json, sha256_file
from dinosearch.features.folder import load_features
from dinosearch.index.assemble import set_search_params
from dinosearch.index.choose import SEARCH_PARAMS
from dinosearch.index.knn import search_index
from dinosearch.index.publish import VERSIONS, current_version

if TYPE_CHECKING:
    from dinosearch.adapt.adapter import DomainAdapter

EXACT_STORAGE = ("flat", "ivf-flat", "hnsw")  # index types that keep the vectors themselves
DATA_FILES = ("index.faiss", "metadata.parquet")
REBUILD = "rebuild the index with `dinosearch index`"


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
    def manifest_path(self) -> Path:
        return self.version_dir / "manifest.json"

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

    @property
    def backbone_fingerprint(self) -> str:
        return str(self.manifest["backbone"]["fingerprint"])

    @property
    def adapter_fingerprint(self) -> str | None:
        """The adapter's fingerprint, None for a raw index."""
        return (self.manifest.get("adapter") or {}).get("fingerprint")

    def load_adapter(self, path: str | Path | None = None) -> DomainAdapter | None:
        """The adapter these vectors were made with (None: raw), refused if it changed since.

        ``path`` reads it from another folder (it moved) instead of the one the manifest names.
        """
        info = self.manifest.get("adapter")
        if not info:
            return None
        from dinosearch.adapt.adapter import load_adapter

        where = path if path is not None else info["path"]
        try:
            return load_adapter(
                where,
                backbone_fingerprint=self.backbone_fingerprint,
                fingerprint=info["fingerprint"],
            )
        except ValueError as e:
            if "was expected" not in str(e):
                raise
            raise ValueError(
                f"adapter {where} changed since {self.manifest_path} was built with "
                f"{info['fingerprint']}; pass --adapter with that adapter, or rebuild the index"
            ) from e

    def rows(self, ids: np.ndarray) -> pd.DataFrame:
        """Metadata rows of vector ``ids`` (k,), in that order; only those rows are converted."""
        return self.take(ids).to_pandas()

    def take(self, ids: np.ndarray) -> pa.Table:
        """Metadata rows of vector ``ids`` (k,), in that order, as Arrow."""
        return self.table.take(pa.array(np.asarray(ids, dtype=np.int64)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, D) unit queries → scores (B, k), ids (B, k); exact Flat runs as one numpy matmul."""
        return search_index(self.index, queries, k)

    def set_search_params(self, **params: float) -> None:
        """Change search-time parameters (nprobe, k_factor, ef_search) of this opened index only."""
        unknown = set(params) - set(SEARCH_PARAMS)
        if unknown:
            raise ValueError(f"unknown search parameters {sorted(unknown)}; use {SEARCH_PARAMS}")
        kind, refine = self.manifest["index_type"], self.manifest["params"].get("refine", "none")
        applies = {
            "nprobe": kind in ("ivf-flat", "ivf-pq"),
            "k_factor": kind == "ivf-pq" and refine != "none",
            "ef_search": kind == "hnsw",
        }
        for name, value in params.items():
            if not applies[name]:
                raise ValueError(
                    f"{name} does not apply to {self.path} ({kind} index"
                    f"{', no re-ranking copy' if kind == 'ivf-pq' else ''}); "
                    "nprobe is for IVF indexes, k_factor for re-ranked IVF-PQ, ef_search for HNSW"
                )
            if not value >= 1:
                raise ValueError(f"{name} must be ≥ 1, not {value!r}")
        set_search_params(self.index, params)
        self.manifest["params"] = {**self.manifest["params"], **params}

    def vectors(self) -> np.ndarray:
        """All (N, D) float32 unit vectors: read back from FAISS, or recomputed when it stores codes."""
        if self.manifest["index_type"] in EXACT_STORAGE:
            if isinstance(self.index, faiss.IndexIVF):
                self.index.make_direct_map()
            return self.index.reconstruct_n(0, self.index.ntotal)
        return recompute_vectors(self.manifest, self.load_adapter())


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
        raise FileNotFoundError(f"{manifest_path} is missing; {REBUILD}")
    manifest = read_json(manifest_path)
    if manifest.get("kind") != "index":
        raise ValueError(
            f"{manifest_path} is not an index manifest (kind {manifest.get('kind')!r})"
        )
    check_index_manifest(manifest, manifest_path, verify=verify)
    for name in DATA_FILES:
        path = vdir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; {REBUILD}")
        if verify and sha256_file(path) != manifest["checksums"][name]:
            raise ValueError(
                f"{path}: checksum differs from {manifest_path}; the file is corrupt or "
                f"was altered: {REBUILD}"
            )
    try:
        index = faiss.read_index(str(vdir / "index.faiss"))
        table = pq.read_table(vdir / "metadata.parquet", memory_map=True)
    except Exception as e:  # faiss raises RuntimeError, Arrow its own errors
        if not vdir.is_dir():  # deleted (pruned, erased) while we read it: open_index retries
            raise FileNotFoundError(f"{vdir} was deleted while it was read") from e
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
    set_search_params(index, manifest.get("params") or {})
    return IndexHandle(root, version, index, table, manifest)


def check_index_manifest(manifest: dict[str, Any], path: Path, *, verify: bool = True) -> None:
    """Every field an opened index reads is there and of its type (ValueError naming it otherwise)."""
    spec: dict[str, Kind] = {
        "count": "count",
        "dim": "positive",
        "backbone.fingerprint": "str",
        "vectors_fingerprint": "str",
        "index_type": "str",
        "features": "object",
    }
    if manifest.get("adapter") is not None:
        spec.update({"adapter.path": "str", "adapter.fingerprint": "str"})
    if verify:
        spec.update({f"checksums.{n}": "str" for n in DATA_FILES})
    check_fields(manifest, spec, path, REBUILD)


def recompute_vectors(manifest: dict[str, Any], adapter: DomainAdapter | None) -> np.ndarray:
    """(N, D) unit vectors rebuilt from the features folders an index manifest names, via ``adapter``."""
    return np.concatenate([to_vectors(f, adapter) for _, f, _ in iter_sources(manifest)])


def iter_sources(
    manifest: dict[str, Any], override: str | Path | None = None
) -> Iterator[tuple[Path, np.ndarray, pd.Series]]:
    """The features an index was built from, in its row order: (folder, (n, D) features, (n,) ids)
    for its first features folder and each appended one (only the rows an append added).

    ``override`` reads a single-source index's features from another folder (it moved). Raises
    FileNotFoundError when a folder is gone, ValueError when its features changed since the build.
    """
    sources = [manifest["features"], *manifest.get("appended", [])]
    if override is not None and len(sources) > 1:
        raise ValueError(
            f"--features: this index was built from {len(sources)} features folders (appends); "
            "move them back to the paths its manifest names"
        )
    for src in sources:
        path = Path(override) if override is not None else Path(src["path"])
        if not (path / "manifest.json").is_file():
            raise FileNotFoundError(
                f"the features folder this index was built from, {path}, is gone; pass "
                "--features FOLDER if it moved, or rebuild the index"
            )
        fs = load_features(path)
        checksum = fs.manifest.get("checksums", {}).get("features.npy")
        if (
            fs.manifest.get("images") != src["images"]
            or len(fs.features) != src["count"]
            or (src.get("checksum") is not None and checksum != src["checksum"])
        ):
            raise ValueError(
                f"{path}: features changed since the index was built; rebuild the index, or "
                "pass --features with the folder it was built from"
            )
        rows = rows_from_ranges(src["rows"]) if "rows" in src else slice(None)
        yield path, fs.features[rows], fs.metadata["id"].astype(str).iloc[rows]


def rows_from_ranges(ranges: list[list[int]]) -> np.ndarray:
    """[[start, stop), …] runs (an append's ``rows`` in the manifest) → (n,) int64 row numbers."""
    return np.concatenate(
        [np.arange(a, b, dtype=np.int64) for a, b in ranges] or [np.empty(0, np.int64)]
    )
