"""Explain one (query, result) pair of an index: the map its pooling and adapter allow, plus views."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dinosearch.backbones.transforms import eval_transform
from dinosearch.explain.maps import (
    Method,
    PatchMap,
    Side,
    best_matches,
    decompose,
    input_ig,
    token_ig,
)
from dinosearch.explain.words import statement
from dinosearch.inputs.images import read_image

if TYPE_CHECKING:
    from dinosearch.adapt.adapter import DomainAdapter
    from dinosearch.backbones import Backbone
    from dinosearch.backbones.backbone import Preprocess
    from dinosearch.search import ImageSource, Searcher

ExplainMethod = Literal["auto", "decomposition", "token-ig", "input-ig"]
# input-ig: 1 step (plain gradient × input) left most of the score unaccounted for (docs/explain.md)
DEFAULT_STEPS: dict[str, int] = {"decomposition": 0, "token-ig": 16, "input-ig": 16}
EXACT_TOL = (
    1e-5  # |score − rest − Σ shares| allowed for an exact map (float64 sums of float32 tokens)
)


class TokenCache:
    """The final tokens of the last ``size`` films, keyed by backbone and model input; thread-safe."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> torch.Tensor | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key: str, tokens: torch.Tensor) -> None:
        with self._lock:
            self._items[key] = tokens
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass
class PairExplanation:
    """A map of one pair, the two films as the backbone sees them, and optional best matches."""

    map: PatchMap
    query_view: Image.Image  # (S, S) RGB before normalising
    result_view: Image.Image
    patch: int  # patch side in pixels
    matches: np.ndarray | None  # (N,) for each query patch, its most similar result patch
    match_cosine: np.ndarray | None  # (N,) their token cosine
    seconds: float  # time taken to explain

    @property
    def sums_to_score(self) -> bool:
        """The method claims an exact split and both sides' gaps are within ``EXACT_TOL``."""
        gaps = (abs(self.map.gap("query")), abs(self.map.gap("result")))
        return self.map.exact and max(gaps) <= EXACT_TOL

    def to_json(self) -> dict[str, Any]:
        """Grid, per-patch shares of both films (row-major), score, method and completeness."""
        m = self.map
        out: dict[str, Any] = {
            "method": m.method,
            "label": m.label,
            "score": m.score,
            "grid": list(m.grid),
            "patch_size": self.patch,
            "steps": m.steps,
            "sums_to_score": self.sums_to_score,
            "completeness": m.completeness(),  # the smaller film's; words.statement says it
            "statement": statement(m),
            "seconds": round(self.seconds, 4),
        }
        sides: tuple[tuple[Side, np.ndarray], ...] = (("query", m.query), ("result", m.result))
        for side, effects in sides:
            shares = m.shares(side)
            out[side] = {
                "contributions": shares.round(8).tolist(),  # each patch's share of the score
                "effects": effects.round(8).tolist(),  # what the map draws: first-order effect
                "sum": float(shares.sum()),
                "rest": m.rest(side),  # CLS term (decomposition) or the score with this film masked
                "gap": m.gap(side),  # score − rest − sum
                "completeness": m.completeness(side),  # 1 − |score − sum| / |score|, in [0, 1]
            }
        if self.matches is not None and self.match_cosine is not None:
            cols = m.grid[1]
            out["matches"] = [
                {"query_patch": [i // cols, i % cols], "result_patch": [int(j) // cols, int(j) % cols],
                 "cosine": round(float(c), 6)}
                for i, (j, c) in enumerate(zip(self.matches, self.match_cosine, strict=True))
            ]  # fmt: skip
        return out

    @classmethod
    def from_json(
        cls, data: dict[str, Any], query_view: Image.Image, result_view: Image.Image
    ) -> PairExplanation:
        """What ``to_json`` wrote (e.g. a server's answer), with the two films' model views made
        here (``model_view``): shares and effects as sent, rounded to 1e-8."""
        sides = {}
        for side in ("query", "result"):
            effects = np.asarray(data[side]["effects"], dtype=np.float64)
            shares = np.asarray(data[side]["contributions"], dtype=np.float64)
            sides[side] = (effects, shares - effects, float(data[side]["rest"]))
        patch_map = PatchMap(
            method=data["method"],
            query=sides["query"][0],
            result=sides["result"][0],
            query_base=sides["query"][1],
            result_base=sides["result"][1],
            score=float(data["score"]),
            query_rest=sides["query"][2],
            result_rest=sides["result"][2],
            steps=int(data["steps"]),
        )
        matches = cosine = None
        if data.get("matches"):
            cols = patch_map.grid[1]
            matches = np.array(
                [r * cols + c for r, c in (m["result_patch"] for m in data["matches"])]
            )
            cosine = np.array([m["cosine"] for m in data["matches"]], dtype=np.float32)
        patch = int(data["patch_size"])
        return cls(
            patch_map, query_view, result_view, patch, matches, cosine, float(data["seconds"])
        )


class Explainer:
    """Explains the scores of one index's vectors: its backbone and (optional) adapter.

    Args:
        backbone: a backbone with patch tokens (DINOv2).
        adapter: the index's adapter; None for a raw index.
        cache: final tokens shared with other explainers of the same backbone.
    """

    def __init__(
        self,
        backbone: Backbone,
        adapter: DomainAdapter | None = None,
        *,
        cache: TokenCache | None = None,
    ) -> None:
        self.backbone = backbone
        self.adapter = adapter
        self.cache = cache or TokenCache()
        self.transform = eval_transform(backbone.preprocess)
        self.device = next(backbone.parameters()).device

    @classmethod
    def for_searcher(cls, searcher: Searcher, *, cache: TokenCache | None = None) -> Explainer:
        return cls(searcher.backbone, searcher.adapter, cache=cache)

    def resolve(self, method: ExplainMethod = "auto") -> Method:
        """The method ``auto`` means here, or ``method`` itself once checked to apply."""
        _ = self.backbone.grid  # raises for backbones without patch tokens
        cls_only = self.backbone.pooling == "cls"
        if method == "auto":
            return "input-ig" if cls_only else "token-ig" if self.adapter else "decomposition"
        if method in ("decomposition", "token-ig") and cls_only:
            raise ValueError(
                f"--method {method} needs mean-pooled features, but this index pools the CLS token "
                "(not a sum over patches); use --method input-ig, or embed with --pooling mean"
            )
        if method == "decomposition" and self.adapter is not None:
            raise ValueError(
                "--method decomposition is exact only for a raw index; this one has an adapter: "
                "use --method token-ig or input-ig"
            )
        if method == "token-ig" and self.adapter is None:
            raise ValueError(
                "--method token-ig explains an adapter; for a raw index use decomposition"
            )
        if method not in DEFAULT_STEPS:
            raise ValueError(f"unknown method {method!r}; use auto, {', '.join(DEFAULT_STEPS)}")
        return method

    def inputs(self, sources: Sequence[ImageSource]) -> torch.Tensor:
        """Images (path, bytes or PIL) → (B, 3, S, S) normalised model inputs on the device."""
        images = [s if isinstance(s, Image.Image) else read_image(s) for s in sources]
        return torch.stack([self.transform(i) for i in images]).to(self.device)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, prefix + N, W) final tokens, from the cache where seen before."""
        keys = [self._key(x) for x in images]
        found = [self.cache.get(k) for k in keys]
        todo = [i for i, t in enumerate(found) if t is None]
        if todo:
            with torch.no_grad():
                fresh = self.backbone.tokens(images[todo]).float()
            for i, t in zip(todo, fresh, strict=True):
                self.cache.put(keys[i], t)
                found[i] = t
        return torch.stack([t for t in found if t is not None])

    def vectors(self, images: torch.Tensor, *, cached: bool = False) -> torch.Tensor:
        """(B, 3, S, S) → (B, D') unit vectors of this index's space; ``cached`` reuses tokens."""
        with torch.no_grad():
            features = self.backbone.pool(self.tokens(images)) if cached else self.backbone(images)
            return self.project(features)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) backbone features → (B, D') unit vectors: through the adapter if any."""
        return F.normalize(features if self.adapter is None else self.adapter(features), dim=-1)

    def explain(
        self,
        query: ImageSource,
        result: ImageSource,
        *,
        method: ExplainMethod = "auto",
        steps: int | None = None,
        matches: bool = True,
    ) -> PairExplanation:
        """Why ``result`` scores as it does for ``query``: a per-patch map of both films.

        Raises:
            ValueError: the method does not apply to this index (the message names one that does).
        """
        start = time.perf_counter()
        images = self.inputs([query, result])  # (2, 3, S, S)
        patch_map = self.explain_inputs(images, method=method, steps=steps)
        best = best_matches(self._patches(self.tokens(images))) if matches else (None, None)
        query_view, result_view = (self._view(x) for x in images)
        took = time.perf_counter() - start
        patch = self.backbone.patch_size
        return PairExplanation(patch_map, query_view, result_view, patch, best[0], best[1], took)

    def explain_inputs(
        self, images: torch.Tensor, *, method: ExplainMethod = "auto", steps: int | None = None
    ) -> PatchMap:
        """(2, 3, S, S) normalised query and result → their map."""
        chosen = self.resolve(method)
        steps = DEFAULT_STEPS[chosen] if steps is None else steps
        if chosen != "decomposition" and steps < 1:
            raise ValueError(f"--steps {steps}: {chosen} needs at least 1 step")
        grid = self.backbone.grid
        if chosen == "input-ig":
            forward = lambda x: self.project(self.backbone(x))  # noqa: E731
            return input_ig(forward, images, self.backbone.patch_size, steps=steps)
        tokens = self.tokens(images)
        if chosen == "decomposition":
            with_cls = self.backbone.pooling == "cls+mean"
            return decompose(tokens[:, 0], self._patches(tokens), grid, with_cls=with_cls)
        assert self.adapter is not None  # resolve() checked
        pooled = self.backbone.pool(tokens)
        baseline = self.adapter.mean[-tokens.shape[-1] :]  # the adapter's mean patch-mean feature
        head = _unnormalised(self.adapter)
        return token_ig(pooled, self._patches(tokens), grid, head, baseline, steps=steps)

    def _patches(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, prefix + N, W) → (B, N, W): the patch grid, CLS and registers dropped."""
        return tokens[:, self.backbone.num_prefix_tokens :]

    def _key(self, image: torch.Tensor) -> str:
        digest = hashlib.sha1(image.detach().cpu().numpy().tobytes()).hexdigest()
        return f"{self.backbone.fingerprint}|{digest}"

    def _view(self, image: torch.Tensor) -> Image.Image:
        return unnormalised_view(image, self.backbone.preprocess)


def unnormalised_view(image: torch.Tensor, pre: Preprocess) -> Image.Image:
    """(3, S, S) normalised → the RGB picture the backbone saw."""
    mean, std = (torch.tensor(v, device=image.device)[:, None, None] for v in (pre.mean, pre.std))
    pixels = ((image * std + mean).clamp(0, 1) * 255).round().byte()  # (3, S, S)
    return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy(), "RGB")


def model_view(image: Image.Image, pre: Preprocess) -> Image.Image:
    """A film as a backbone with preprocessing ``pre`` sees it (resized, cropped), in RGB."""
    return unnormalised_view(eval_transform(pre)(image), pre)


def _unnormalised(adapter: DomainAdapter) -> Callable[[torch.Tensor], torch.Tensor]:
    """The adapter without its final L2 norm: (B, D) → z + alpha · MLP(z), z standardised."""

    def head(x: torch.Tensor) -> torch.Tensor:
        z = adapter.standardize(x.float())
        return z + adapter.alpha * adapter.mlp(z)

    return head
