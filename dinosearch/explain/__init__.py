"""Explain stage: why a result is similar to a query, per patch of both films (maps, views, drawing)."""

from dinosearch.explain.maps import PatchMap, best_matches, decompose, input_ig, token_ig
from dinosearch.explain.pair import Explainer, PairExplanation, TokenCache

__all__ = [
    "Explainer",
    "PairExplanation",
    "PatchMap",
    "TokenCache",
    "best_matches",
    "decompose",
    "input_ig",
    "token_ig",
]
