"""Searchers: ``VectorSearcher`` ranks an index's rows for query vectors; ``Searcher`` puts the
query embedder in front of it, so images can be queried with the index's own backbone and adapter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from dinosearch.adapt.vectors import to_vectors
from dinosearch.core.columns import check_metadata_columns
from dinosearch.core.runtime import resolve_device
from dinosearch.index.handle import EXACT_STORAGE, IndexHandle, open_index
from dinosearch.index.publish import current_version
from dinosearch.search.filters import Filters, GroupExclusion, RowFilters
from dinosearch.search.query import ImageSource, QueryEmbedder
from dinosearch.search.rank import deep_search, row_vectors
from dinosearch.search.refine import first_per_group, group_sizes, mmr, rocchio
from dinosearch.search.region import Box, RegionMethod

if TYPE_CHECKING:
    from dinosearch.adapt.adapter import DomainAdapter
    from dinosearch.backbones import Backbone
    from dinosearch.backbones.transforms import ImageTransform


FRONT = ("rank", "score", "id", "path", "label")  # a result's first columns, then the metadata's


@dataclass
class SearchResult:
    """Top-k hits of one query, best first; their metadata is read from the index on first use."""

    ids: np.ndarray  # (k,) int64 vector ids = metadata row numbers
    scores: np.ndarray  # (k,) float32 inner products of unit vectors (cosine similarity)
    table: pa.Table = field(repr=False)  # the k hits' metadata rows (Arrow), in rank order
    more_films: np.ndarray | None = None  # (k,) other rows of each hit's group (collapse)

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def rows(self) -> pd.DataFrame:
        """k rows: rank, score, id, path, label, (more_films,) then every metadata column."""
        rows = self.table.to_pandas()
        rows.insert(0, "rank", np.arange(1, len(self.ids) + 1))
        rows.insert(1, "score", self.scores)
        rows = rows[[*FRONT, *(c for c in rows.columns if c not in FRONT)]]
        if self.more_films is not None:
            rows.insert(5, "more_films", self.more_films)
        return rows

    def records(self) -> list[dict[str, Any]]:
        """The hits as plain dicts (metadata, ``rank``, ``score``, ``more_films``), without pandas:
        what a service answers many times a second."""
        records = self.table.to_pylist()
        for i, record in enumerate(records):
            record["rank"], record["score"] = i + 1, float(self.scores[i])
            if self.more_films is not None:
                record["more_films"] = int(self.more_films[i])
        return records


class VectorSearcher:
    """Query one index folder by vector, following its ``current`` version (no backbone needed).

    Args:
        index_dir: an index folder written by ``build_index``.
        search_params: search-time parameters (``nprobe``, ``k_factor``, ``ef_search``) instead of
            those the index was built with; kept when a newer version is adopted.
    """

    def __init__(
        self, index_dir: str | Path, search_params: dict[str, float] | None = None
    ) -> None:
        self.index_dir = Path(index_dir)
        self.search_params = dict(search_params or {})
        self.handle = self._open()
        self._rows = RowFilters(self.handle)
        self._all_vectors: np.ndarray | None = None

    def _open(self) -> IndexHandle:
        handle = _searchable(open_index(self.index_dir))
        if self.search_params:
            handle.set_search_params(**self.search_params)
        return handle

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

    def refresh(self) -> bool:
        """Re-open the index if a newer version was published; True when it did."""
        if current_version(self.index_dir) == self.handle.version:
            return False
        handle = self._open()
        self._adopt(handle)
        self.handle, self._rows = handle, RowFilters(handle)
        self._all_vectors = None
        return True

    def _adopt(self, handle: IndexHandle) -> None:
        """Check (or prepare for) a newly published version before it replaces ``self.handle``."""

    def search_vectors(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        filters: Filters = None,
        exclude_group: GroupExclusion = None,
        fingerprint: str | None = None,
        like: Sequence[Any] = (),
        unlike: Sequence[Any] = (),
        collapse: str | None = None,
        diversity: float | None = None,
    ) -> list[SearchResult]:
        """Top-k rows for each of (B, D) query vectors (a (D,) vector is one query).

        Args:
            filters: an SQL expression over the metadata (``"patient_age >= 60 AND view IN
                ('PA','AP')"``, see ``search.where``), ``{"view": "PA"}`` (a list value means "any
                of"), or the old ``'view == "PA" and label != normal'``; applied before ranking.
            exclude_group: ``("patient_id", value)`` drops rows sharing that value; a list of B
                values gives each query its own.
            fingerprint: how ``queries`` were made (``Searcher.fingerprint``); refused when it differs.
            like, unlike: metadata ``id`` values marked similar / not similar: every query moves
                by Rocchio (α=1, β=0.75, γ=0.25, ``search.refine``) before it is searched.
            collapse: a column (``"patient_id"``): keep the best row of each value, k values; the
                rows get ``more_films``, that value's other rows passing the filter.
            diversity: MMR λ in [0, 1] re-ranking 4k candidates (1: none, lower: more diverse).
        Raises:
            ValueError: wrong dimension, a fingerprint mismatch, an unknown filter column or id.
        """
        q = self._checked(queries, fingerprint)
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        if len(like) or len(unlike):
            q = rocchio(q, self.vectors_of_ids(like), self.vectors_of_ids(unlike))
        allowed = self._rows.mask(filters)
        groups = self._rows.groups(exclude_group, len(q))
        codes = None if collapse is None else self._rows.codes(collapse)
        want = k if diversity is None else 4 * k
        found = deep_search(self.handle, q, want, allowed, groups, codes)
        return [
            self._refined(query, ids, scores, k, codes, allowed, diversity)
            for query, (ids, scores) in zip(q, found, strict=True)
        ]

    def _refined(
        self,
        query: np.ndarray,
        ids: np.ndarray,
        scores: np.ndarray,
        k: int,
        codes: np.ndarray | None,
        allowed: np.ndarray | None,
        diversity: float | None,
    ) -> SearchResult:
        """One query's hits → its result: one per group (``codes``), MMR re-ranked, top k."""
        if codes is not None:
            keep = first_per_group(ids, codes, len(ids))
            ids, scores = ids[keep], scores[keep]
        if diversity is not None:
            keep = mmr(query, self.vectors_of_rows(ids), k, diversity)
            ids, scores = ids[keep], scores[keep]
        ids, scores = ids[:k], scores[:k]
        more = None if codes is None else group_sizes(codes, allowed)[ids] - 1
        return SearchResult(ids, scores, self.handle.take(ids), more)

    def _checked(self, queries: np.ndarray, fingerprint: str | None) -> np.ndarray:
        """(B, D) unit queries, after refusing another fingerprint, another dimension, NaN/inf."""
        where = self.handle.manifest_path
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise ValueError(
                f"query vectors were made by {fingerprint!r} but {where} "
                f"holds {self.fingerprint!r}; embed queries with this index's Searcher"
            )
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.handle.dim:
            raise ValueError(
                f"query vectors have shape {np.shape(queries)} but {where} "
                f"holds {self.handle.dim}-d vectors; embed queries with this index's Searcher"
            )
        if not np.isfinite(q).all():
            raise ValueError("query vectors contain NaN or inf")
        return to_vectors(q)  # unit length, contiguous

    def vectors_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """(n, D) unit vectors of index rows (read back from FAISS, or recomputed for PQ codes)."""
        if self.handle.manifest["index_type"] not in EXACT_STORAGE and self._all_vectors is None:
            self._all_vectors = self.handle.vectors()  # PQ codes: recomputed once per version
        return row_vectors(self.handle, rows, self._all_vectors)

    def vectors_of_ids(self, ids: Sequence[Any]) -> np.ndarray:
        """(n, D) unit vectors of the rows whose metadata ``id`` is in ``ids`` (in that order)."""
        return self.vectors_of_rows(self._rows.rows_of_ids(ids))


def _searchable(handle: IndexHandle) -> IndexHandle:
    """``handle``, unless its metadata has a column named like a result column (indexes built before the check)."""
    check_metadata_columns(handle.table.column_names, handle.version_dir / "metadata.parquet")
    return handle


class Searcher(VectorSearcher):
    """Query one index folder by image or by vector, following its ``current`` version.

    Args:
        index_dir: an index folder written by ``build_index``.
        backbone: an already loaded backbone to share (its fingerprint must match the index's);
            None loads the one the manifest describes.
        device: where the backbone and adapter run.
        search_params: as for ``VectorSearcher``.
    """

    def __init__(
        self,
        index_dir: str | Path,
        *,
        backbone: Backbone | None = None,
        device: str | torch.device = "cpu",
        search_params: dict[str, float] | None = None,
    ) -> None:
        self.device = resolve_device(str(device))
        super().__init__(index_dir, search_params)
        self.embedder = QueryEmbedder.for_index(self.handle, backbone=backbone, device=self.device)

    @property
    def backbone(self) -> Backbone:
        return self.embedder.backbone

    @property
    def adapter(self) -> DomainAdapter | None:
        return self.embedder.adapter

    @property
    def transform(self) -> ImageTransform:
        """The backbone's eval preprocessing: PIL image → (3, S, S) tensor."""
        return self.embedder.transform

    def _adopt(self, handle: IndexHandle) -> None:
        """Refuse a version made by another backbone; load its adapter when that changed."""
        if handle.backbone_fingerprint != self.backbone.fingerprint:
            raise ValueError(
                f"{handle.manifest_path} now uses backbone "
                f"{handle.backbone_fingerprint!r}; open a new Searcher"
            )
        if handle.adapter_fingerprint != self.handle.adapter_fingerprint:
            self.embedder = QueryEmbedder.for_index(
                handle, backbone=self.backbone, device=self.device
            )

    def image_features(self, sources: Sequence[ImageSource]) -> np.ndarray:
        """(B, D_backbone) float32 backbone features of query images (one forward pass)."""
        return self.embedder.image_features(sources)

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """Backbone features (B, D_backbone) or (D_backbone,) → (B, D) query vectors of this index."""
        return self.embedder.embed_features(features)

    def embed_image(self, source: ImageSource) -> np.ndarray:
        """One image (path, bytes or PIL) → (D,) unit query vector."""
        return self.embedder.embed_image(source)

    def search_image(
        self,
        source: ImageSource,
        k: int = 10,
        *,
        region: Box | None = None,
        region_method: RegionMethod = "crop",
        **options: Any,
    ) -> SearchResult:
        """Top-k rows for one query image; ``options`` as for ``search_vectors``."""
        return self.search_images(
            [source], k, region=region, region_method=region_method, **options
        )[0]

    def search_images(
        self,
        sources: Sequence[ImageSource],
        k: int = 10,
        *,
        region: Box | None = None,
        region_method: RegionMethod = "crop",
        **options: Any,
    ) -> list[SearchResult]:
        """Top-k rows for each query image (path, bytes or PIL), embedded in one forward pass.

        Args:
            region: ``(x0, y0, x1, y1)`` in query-image pixels: search with that box of every query
                (``search.region``: ``"crop"`` re-embeds the box, ``"tokens"`` runs only its patches).
            options: ``filters``, ``exclude_group``, ``like``, ``unlike``, ``collapse``,
                ``diversity`` of ``search_vectors``.
        """
        if region is None:
            return self.search_vectors(self.embedder.embed_images(sources), k, **options)
        features = self.embedder.region_features(sources, region, region_method)
        return self.search_vectors(self.embedder.embed_features(features), k, **options)
