"""Searcher: open an index folder, embed query images with its own backbone and adapter, return ranked rows."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from dinosearch.adapt.vectors import to_vectors
from dinosearch.backbones import Backbone, backbone_from_info
from dinosearch.backbones.transforms import ImageTransform, eval_transform
from dinosearch.core.runtime import resolve_device
from dinosearch.index.build import load_index_adapter, open_index
from dinosearch.index.publish import current_version
from dinosearch.inputs.images import read_image

if TYPE_CHECKING:
    from dinosearch.adapt.adapter import DomainAdapter

ImageSource = str | Path | bytes | Image.Image
Filters = str | Mapping[str, Any] | None
GroupExclusion = tuple[str, Any] | None  # (column, value) or (column, [one value per query])
_CLAUSE = re.compile(r"^\s*(\w+)\s*(==|!=|=)\s*(.+?)\s*$")


@dataclass
class SearchResult:
    """Top-k hits of one query, best first."""

    ids: np.ndarray  # (k,) int64 vector ids = metadata row numbers
    scores: np.ndarray  # (k,) float32 inner products of unit vectors (cosine similarity)
    rows: pd.DataFrame  # k rows: rank, score, id, path, label and every metadata column

    def __len__(self) -> int:
        return len(self.ids)


class Searcher:
    """Query one index folder by image or by vector, following its ``current`` version.

    Args:
        index_dir: an index folder written by ``build_index``.
        backbone: an already loaded backbone to share (its fingerprint must match the index's);
            None loads the one the manifest describes.
        device: where the backbone and adapter run.
    """

    def __init__(
        self,
        index_dir: str | Path,
        *,
        backbone: Backbone | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.index_dir = Path(index_dir)
        self.device = resolve_device(str(device))
        self.handle = open_index(self.index_dir)
        info = self.handle.manifest["backbone"]
        if backbone is None:
            backbone = backbone_from_info(info, device=self.device)
        elif backbone.fingerprint != info["fingerprint"]:
            raise ValueError(
                f"backbone {backbone.fingerprint!r} does not match {self._manifest_path()}, "
                f"made with {info['fingerprint']!r}; pass that backbone or none"
            )
        self.backbone = backbone
        self._transform: ImageTransform | None = None  # built on the first image query
        self.adapter = self._load_adapter()
        self._masks: dict[str, np.ndarray] = {}
        self._groups: dict[str, tuple[np.ndarray, dict[Any, int]]] = {}

    @property
    def manifest(self) -> dict[str, Any]:
        return self.handle.manifest

    @property
    def metadata(self) -> pd.DataFrame:
        return self.handle.metadata

    @property
    def fingerprint(self) -> str:
        """How this index's vectors (and so its queries) are made: backbone + adapter."""
        return self.handle.fingerprint

    @property
    def random_init(self) -> bool:
        return self.handle.random_init

    @property
    def transform(self) -> ImageTransform:
        """The backbone's eval preprocessing: PIL image → (3, S, S) tensor."""
        if self._transform is None:
            self._transform = eval_transform(self.backbone.preprocess)
        return self._transform

    def _manifest_path(self) -> Path:
        return self.handle.version_dir / "manifest.json"

    def _load_adapter(self) -> DomainAdapter | None:
        info = self.handle.manifest.get("adapter")
        if not info:
            return None
        adapter = load_index_adapter(info["path"], self.handle.manifest["backbone"]["fingerprint"])
        if adapter is not None and adapter.fingerprint != info["fingerprint"]:
            raise ValueError(
                f"adapter {info['path']} is now {adapter.fingerprint} but {self._manifest_path()} "
                f"was built with {info['fingerprint']}; rebuild the index with this adapter"
            )
        return None if adapter is None else adapter.to(self.device).eval()

    def refresh(self) -> bool:
        """Re-open the index if a newer version was published; True when it did."""
        if current_version(self.index_dir) == self.handle.version:
            return False
        handle = open_index(self.index_dir)
        if handle.manifest["backbone"]["fingerprint"] != self.backbone.fingerprint:
            raise ValueError(
                f"{handle.version_dir / 'manifest.json'} now uses backbone "
                f"{handle.manifest['backbone']['fingerprint']!r}; open a new Searcher"
            )
        old, self.handle = self.handle, handle
        if (old.manifest.get("adapter") or {}).get("fingerprint") != (
            handle.manifest.get("adapter") or {}
        ).get("fingerprint"):
            self.adapter = self._load_adapter()
        self._masks.clear()
        self._groups.clear()
        return True

    # ---- embedding: image → backbone features → vectors ----

    def image_features(self, sources: Sequence[ImageSource]) -> np.ndarray:
        """(B, D_backbone) float32 backbone features of query images (one forward pass)."""
        batch = torch.stack([self.transform(_as_image(s)) for s in sources])  # (B, 3, S, S)
        device = next(self.backbone.parameters()).device
        with torch.inference_mode():
            return self.backbone(batch.to(device)).float().cpu().numpy()

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """Backbone features (B, D_backbone) or (D_backbone,) → (B, D) query vectors of this index."""
        return to_vectors(np.atleast_2d(np.asarray(features, dtype=np.float32)), self.adapter)

    def embed_image(self, source: ImageSource) -> np.ndarray:
        """One image (path, bytes or PIL) → (D,) unit query vector."""
        return self.embed_features(self.image_features([source]))[0]

    # ---- search ----

    def search_image(
        self,
        source: ImageSource,
        k: int = 10,
        *,
        filters: Filters = None,
        exclude_group: GroupExclusion = None,
    ) -> SearchResult:
        """Top-k rows for one query image."""
        return self.search_images([source], k, filters=filters, exclude_group=exclude_group)[0]

    def search_images(
        self,
        sources: Sequence[ImageSource],
        k: int = 10,
        *,
        filters: Filters = None,
        exclude_group: GroupExclusion = None,
    ) -> list[SearchResult]:
        vectors = self.embed_features(self.image_features(sources))
        return self.search_vectors(vectors, k, filters=filters, exclude_group=exclude_group)

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int = 10,
        *,
        filters: Filters = None,
        exclude_group: GroupExclusion = None,
        fingerprint: str | None = None,
    ) -> list[SearchResult]:
        """Top-k rows for each of (B, D) query vectors (a (D,) vector is one query).

        Args:
            filters: keep rows matching ``{"view": "PA"}`` (a list value means "any of"), or
                ``'view == "PA" and label != normal'``.
            exclude_group: ``("patient_id", value)`` drops rows sharing that value; a list of B
                values gives each query its own.
            fingerprint: how ``vectors`` were made (``Searcher.fingerprint``); refused when it differs.
        Raises:
            ValueError: wrong dimension, a fingerprint mismatch, or an unknown filter column.
        """
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise ValueError(
                f"query vectors were made by {fingerprint!r} but {self._manifest_path()} "
                f"holds {self.fingerprint!r}; embed queries with this index's Searcher"
            )
        queries = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if queries.ndim != 2 or queries.shape[1] != self.handle.dim:
            raise ValueError(
                f"query vectors have shape {np.shape(vectors)} but {self._manifest_path()} "
                f"holds {self.handle.dim}-d vectors; embed queries with this index's Searcher"
            )
        if not np.isfinite(queries).all():
            raise ValueError("query vectors contain NaN or inf")
        queries = to_vectors(queries)  # unit length, contiguous
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        allowed = self._filter_mask(filters)
        groups = self._group_codes(exclude_group, len(queries))
        return [
            self._result(ids, scores)
            for ids, scores in self._deep_search(queries, k, allowed, groups)
        ]

    def _deep_search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        groups: tuple[np.ndarray, np.ndarray] | None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Search ever deeper (×4) until each query has k rows that pass the filter and group rule."""
        n = self.handle.index.ntotal
        share = 1.0 if allowed is None else max(allowed.mean(), 1.0 / max(n, 1))
        depth = min(n, k if allowed is None and groups is None else max(4 * k, int(2 * k / share)))
        results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)
        todo = np.arange(len(queries))
        while len(todo):
            scores, ids = self.handle.search(queries[todo], max(depth, 1))  # (b, depth)
            keep = ids >= 0
            if allowed is not None:
                keep &= allowed[np.maximum(ids, 0)]
            if groups is not None:
                codes, query_codes = groups
                keep &= codes[np.maximum(ids, 0)] != query_codes[todo, None]
            done = (keep.sum(1) >= k) | (depth >= n)
            for j in np.flatnonzero(done):
                hit = keep[j]
                results[todo[j]] = (ids[j][hit][:k].astype(np.int64), scores[j][hit][:k])
            todo, depth = todo[~done], min(n, depth * 4)
        return results  # type: ignore[return-value]

    def _result(self, ids: np.ndarray, scores: np.ndarray) -> SearchResult:
        rows = self.handle.rows(ids)
        rows.insert(0, "rank", np.arange(1, len(ids) + 1))
        rows.insert(1, "score", scores)
        front = ["rank", "score", "id", "path", "label"]
        rows = rows[front + [c for c in rows.columns if c not in front]]
        return SearchResult(ids, scores, rows)

    def _filter_mask(self, filters: Filters) -> np.ndarray | None:
        """(N,) bool rows passing ``filters``, cached per filter."""
        if not filters:
            return None
        key = repr(sorted(filters.items())) if isinstance(filters, Mapping) else str(filters)
        if key not in self._masks:
            mask = np.ones(self.handle.count, dtype=bool)
            for column, op, value in parse_filters(filters):
                col = self._column(column)
                values = value if isinstance(value, list | tuple | set) else [value]
                match = col.isin([_coerce(v, col) for v in values]).to_numpy()
                mask &= match if op == "==" else ~match
            self._masks[key] = mask
        return self._masks[key]

    def _group_codes(self, exclude: GroupExclusion, b: int) -> tuple[np.ndarray, np.ndarray] | None:
        """((N,) code of each row's group, (B,) code of each query's group; -1 matches nothing)."""
        if exclude is None:
            return None
        column, value = exclude
        col = self._column(column)
        if column not in self._groups:
            codes, uniques = pd.factorize(col, use_na_sentinel=True)
            self._groups[column] = (
                np.where(codes < 0, -3, codes),
                {v: i for i, v in enumerate(uniques)},
            )
        codes, lookup = self._groups[column]  # missing group values (code -3) never match a query
        values = (
            list(value) if isinstance(value, list | tuple | np.ndarray | pd.Series) else [value] * b
        )
        if len(values) != b:
            raise ValueError(
                f"exclude_group has {len(values)} values for {b} queries; give one per query"
            )
        return codes, np.array([lookup.get(_coerce(v, col), -2) for v in values], dtype=np.int64)

    def _column(self, column: str) -> pd.Series:
        if column not in self.metadata.columns:
            raise ValueError(
                f"no metadata column {column!r} in {self.handle.version_dir / 'metadata.parquet'}; "
                f"columns are {list(self.metadata.columns)}"
            )
        return self.metadata[column]


def parse_filters(filters: Filters) -> list[tuple[str, str, Any]]:
    """``{"view": "PA"}`` or ``'view == "PA" and label != normal'`` → [(column, "=="|"!=", value)]."""
    if not filters:
        return []
    if isinstance(filters, Mapping):
        return [(str(c), "==", v) for c, v in filters.items()]
    clauses = []
    for part in re.split(r"\s+and\s+", str(filters).strip()):
        m = _CLAUSE.match(part)
        if not m:
            raise ValueError(
                f"cannot read filter {part!r}; write it as 'column == value' (joined by 'and')"
            )
        column, op, value = m.groups()
        clauses.append((column, "!=" if op == "!=" else "==", value.strip().strip("'\"")))
    return clauses


def _coerce(value: Any, column: pd.Series) -> Any:
    """A filter value typed like ``column`` ("3" matches the integer 3)."""
    if isinstance(value, str) and pd.api.types.is_numeric_dtype(column):
        try:
            return float(value) if pd.api.types.is_float_dtype(column) else int(value)
        except ValueError:
            return value
    return value


def _as_image(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    return read_image(source)
