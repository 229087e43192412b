"""Explain stage: why a result is similar to a query, per patch of both films (maps, views, drawing)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinosearch.core.lazy import lazy_exports

# public name → the module that defines it (imported on first use: `--help` stays light)
_API = {
    "PatchMap": "dinosearch.explain.maps",
    "best_matches": "dinosearch.explain.maps",
    "decompose": "dinosearch.explain.maps",
    "input_ig": "dinosearch.explain.maps",
    "token_ig": "dinosearch.explain.maps",
    "Explainer": "dinosearch.explain.pair",
    "PairExplanation": "dinosearch.explain.pair",
    "TokenCache": "dinosearch.explain.pair",
}
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

if TYPE_CHECKING:
    from dinosearch.explain.maps import PatchMap, best_matches, decompose, input_ig, token_ig
    from dinosearch.explain.pair import Explainer, PairExplanation, TokenCache

__getattr__ = lazy_exports(__name__, _API, globals())
