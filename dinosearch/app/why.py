"""The app's "why similar" view, apart from drawing: explain one shown result on demand, memoised.

Plain Python (no Streamlit); ``streamlit_app.py`` draws what ``WhySimilar.view`` returns.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from PIL import Image

from dinosearch.explain import Explainer, PairExplanation, TokenCache
from dinosearch.explain.draw import LEGEND, legend_bar, scale_of, side_by_side
from dinosearch.explain.words import describe

if TYPE_CHECKING:
    from dinosearch.app.compare import SideBySide

Column = Literal["raw", "adapted"]
MATCH_LINES = 12  # best-match lines drawn when asked: the query patches with the largest effect


@dataclass(frozen=True)
class WhyView:
    """What the app shows for one explained result."""

    image: Image.Image  # query | result, each under its map
    caption: str  # what the map is, how its shares add up, how long it took
    legend: str  # what the colours (and lines) mean
    legend_bar: Image.Image  # blue → grey → red
    explanation: PairExplanation


class WhyPanel:
    """Explains the results of a pair's two columns on demand and draws the panel; the ``size``
    latest explanations are kept. Subclasses say how to key and compute one explanation:
    ``WhySimilar`` with the pair's own model, ``app.remote.RemoteWhy`` through a server."""

    def __init__(self, size: int = 64) -> None:
        self._done: OrderedDict[tuple, PairExplanation] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # Streamlit sessions share this object across threads

    def explain(
        self, column: Column, query: Image.Image, result_path: str, *, matches: bool = False
    ) -> tuple[PairExplanation, bool]:
        """The map of (query, result) in ``column``'s vector space, and whether it was memoised.

        ``matches`` adds best-match correspondences (a forward pass more for CLS-pooled indexes).
        """
        key = self._key(column, query, result_path, matches)
        with self._lock:  # one computation at a time: the model (here or the server's) is shared
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key], True
            explained = self._compute(column, query, result_path, matches)
            self._done[key] = explained
            while len(self._done) > self._size:
                self._done.popitem(last=False)
        return explained, False

    def view(
        self, column: Column, query: Image.Image, result_path: str, *, matches: bool = False
    ) -> WhyView:
        """Everything the "why similar" panel draws for one result."""
        explained, memoised = self.explain(column, query, result_path, matches=matches)
        return why_view(explained, memoised, matches=matches)

    def _key(self, column: Column, query: Image.Image, result_path: str, matches: bool) -> tuple:
        raise NotImplementedError

    def _compute(
        self, column: Column, query: Image.Image, result_path: str, matches: bool
    ) -> PairExplanation:
        raise NotImplementedError


class WhySimilar(WhyPanel):
    """Explains results of a ``SideBySide``'s two columns; both share one token cache.

    Args:
        pair: the raw and adapted searchers; their current backbone and adapter are used per call.
        size: explanations kept (per query, result, column, options).
    """

    def __init__(self, pair: SideBySide, size: int = 64) -> None:
        super().__init__(size)
        self.pair = pair
        self.tokens = TokenCache()

    def _key(self, column: Column, query: Image.Image, result_path: str, matches: bool) -> tuple:
        searcher = self.pair.raw if column == "raw" else self.pair.adapted
        return (column, searcher.fingerprint, image_key(query), result_path, matches)

    def _compute(
        self, column: Column, query: Image.Image, result_path: str, matches: bool
    ) -> PairExplanation:
        searcher = self.pair.raw if column == "raw" else self.pair.adapted
        explainer = Explainer.for_searcher(searcher, cache=self.tokens)
        return explainer.explain(query, result_path, matches=matches)


def why_view(explained: PairExplanation, memoised: bool, *, matches: bool) -> WhyView:
    """The panel for one explanation, computed here or by a server (``app.remote``)."""
    m = explained.map
    took = f"{explained.seconds:.2f} s" + (" (kept from before)" if memoised else "")
    first, method, *sums = describe(m)
    caption = (
        f"**{first}** {method[0].upper()}{method[1:]}. {' · '.join(sums)}. "
        f"{m.grid[0]}×{m.grid[1]} patches of {explained.patch} px. Computed in {took}."
    )
    image = side_by_side(explained, matches=MATCH_LINES if matches else 0)
    legend = LEGEND.format(scale=scale_of(explained))
    bar = legend_bar(image.width, scale_of(explained))
    return WhyView(image, caption, legend, bar, explained)


def image_key(image: Image.Image) -> str:
    """A digest of the query's pixels, so the same film is explained once per result."""
    return hashlib.sha1(image.tobytes() + repr((image.mode, image.size)).encode()).hexdigest()
