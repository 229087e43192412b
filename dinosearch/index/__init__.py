"""Index stage: choose and build FAISS indexes, append, exact k-NN, versioned crash-safe publishing."""

from dinosearch.index.build import build_index
from dinosearch.index.choose import (
    EXACT_MAX,
    INDEX_TYPES,
    REFINES,
    SEARCH_PARAMS,
    IndexType,
    choose_index,
    estimate_bytes,
)
from dinosearch.index.handle import IndexHandle, load_index_adapter, open_index
from dinosearch.index.knn import exact_search
from dinosearch.index.publish import VERSIONS, current_version, list_versions

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
    "load_index_adapter",
    "open_index",
]
