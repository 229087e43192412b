"""Search stage: a vector searcher over one index, the query embedder in front of it, filters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinosearch.core.lazy import lazy_exports

# public name → the module that defines it (imported on first use: `--help` stays light)
_API = {
    "Filters": "dinosearch.search.filters",
    "GroupExclusion": "dinosearch.search.filters",
    "parse_filters": "dinosearch.search.filters",
    "ImageSource": "dinosearch.search.query",
    "QueryEmbedder": "dinosearch.search.query",
    "Searcher": "dinosearch.search.searcher",
    "SearchResult": "dinosearch.search.searcher",
    "VectorSearcher": "dinosearch.search.searcher",
}
__all__ = [
    "Filters",
    "GroupExclusion",
    "ImageSource",
    "QueryEmbedder",
    "SearchResult",
    "Searcher",
    "VectorSearcher",
    "parse_filters",
]

if TYPE_CHECKING:
    from dinosearch.search.filters import Filters, GroupExclusion, parse_filters
    from dinosearch.search.query import ImageSource, QueryEmbedder
    from dinosearch.search.searcher import Searcher, SearchResult, VectorSearcher

__getattr__ = lazy_exports(__name__, _API, globals())
