"""Search stage: a vector searcher over one index, the query embedder in front of it, filters."""

from dinosearch.search.filters import Filters, GroupExclusion, parse_filters
from dinosearch.search.query import ImageSource, QueryEmbedder
from dinosearch.search.searcher import Searcher, SearchResult, VectorSearcher

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
