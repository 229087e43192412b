"""Index stage: choose and build FAISS indexes, append, exact k-NN, versioned crash-safe publishing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinosearch.core.lazy import lazy_exports

# public name → the module that defines it (imported on first use: `--help` stays light)
_API = {
    "build_index": "dinosearch.index.build",
    "EXACT_MAX": "dinosearch.index.choose",
    "INDEX_TYPES": "dinosearch.index.config",
    "REFINES": "dinosearch.index.config",
    "SEARCH_PARAMS": "dinosearch.index.choose",
    "IndexType": "dinosearch.index.config",
    "choose_index": "dinosearch.index.choose",
    "estimate_bytes": "dinosearch.index.choose",
    "IndexHandle": "dinosearch.index.handle",
    "open_index": "dinosearch.index.handle",
    "exact_search": "dinosearch.index.knn",
    "VERSIONS": "dinosearch.index.publish",
    "current_version": "dinosearch.index.publish",
    "list_versions": "dinosearch.index.publish",
}
__all__ = [
    "EXACT_MAX",
    "INDEX_TYPES",
    "IndexHandle",
    "IndexType",
    "REFINES",
    "SEARCH_PARAMS",
    "VERSIONS",
    "build_index",
    "choose_index",
    "current_version",
    "estimate_bytes",
    "exact_search",
    "list_versions",
    "open_index",
]

if TYPE_CHECKING:
    from dinosearch.index.build import build_index
    from dinosearch.index.choose import (
        EXACT_MAX,
        SEARCH_PARAMS,
        choose_index,
        estimate_bytes,
    )
    from dinosearch.index.config import INDEX_TYPES, REFINES, IndexType
    from dinosearch.index.handle import IndexHandle, open_index
    from dinosearch.index.knn import exact_search
    from dinosearch.index.publish import VERSIONS, current_version, list_versions

__getattr__ = lazy_exports(__name__, _API, globals())
