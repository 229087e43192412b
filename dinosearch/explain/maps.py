"""Per-patch explanations of one pair's similarity: an exact decomposition and two attributions.

Every map gives each patch of both films its *effect*: the first-order change of the score if the patch
were taken away (gradient × input). Red patches make the films more alike, blue ones less.

- ``decompose``: raw score of mean-pooled patch tokens, split exactly (Stylianou et al., "Visualizing
  Deep Similarity Networks", WACV 2019, https://arxiv.org/abs/1901.00536): patch i's share is
  c_i = s·w_i + e_i, with w_i its share of its own film's pooled vector (Σ w = 1) and e_i its effect
  (Σ e = 0, e = gradient × input of the cosine on the final tokens). Σ c = score, exactly.
- ``token_ig``: the adapted score, the same split by integrated gradients over the final patch tokens
  through the adapter (norms held fixed); approximate, with a measured gap.
- ``input_ig``: any score (CLS pooling included), gradient × input / integrated gradients on the input
  patches through the whole ViT, from the film with every patch at its mean grey; no base part.
- ``best_matches``: for each query patch the most similar result patch (a correspondence, not a
  decomposition).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Method = Literal["decomposition", "token-ig", "input-ig"]
Head = Callable[[torch.Tensor], torch.Tensor]  # (B, D) pooled features → (B, D') vectors
Side = Literal["query", "result"]

LABELS: dict[str, str] = {
    "decomposition": "exact decomposition (Stylianou et al. 2019): shares sum to the score",
    "token-ig": "integrated gradients over patch tokens through the adapter: approximate",
    "input-ig": "gradient × input on the input patches through the ViT: first-order, approximate",
}


@dataclass(frozen=True)
class PatchMap:
    """One pair's score spread over both films' patch grids (all arrays (rows, cols) float64).

    A patch's share of the score is ``base + effect``; ``Σ share + rest = score`` exactly for the
    decomposition, up to ``gap`` for the attributions. ``effect`` is what the maps draw and rank.
    """

    method: Method
    query: np.ndarray  # effect of each query patch: first-order change of the score without it
    result: np.ndarray
    query_base: np.ndarray  # score × the patch's share of its own film (zeros for input-ig)
    result_base: np.ndarray
    score: float  # the pair's cosine in this index's vector space
    query_rest: float  # off the patches: the CLS term, or the score with the film masked
    result_rest: float
    steps: int = 0  # integration steps (0: none; 1 is plain gradient × input)

    @property
    def grid(self) -> tuple[int, int]:
        return self.query.shape[0], self.query.shape[1]

    @property
    def exact(self) -> bool:
        """Whether the method claims the shares sum to the score (only the decomposition does)."""
        return self.method == "decomposition"

    @property
    def label(self) -> str:
        steps = f" ({self.steps} steps)" if self.method != "decomposition" else ""
        return LABELS[self.method] + steps

    def shares(self, side: Side) -> np.ndarray:
        """(rows, cols) each patch's share of the score: base + effect."""
        return self.query + self.query_base if side == "query" else self.result + self.result_base

    def rest(self, side: Side) -> float:
        return self.query_rest if side == "query" else self.result_rest

    def gap(self, side: Side) -> float:
        """score − rest − Σ shares: what the method's own sum misses (its integration error)."""
        return float(self.score - self.rest(side) - self.shares(side).sum())

    def completeness(self, side: Side | None = None) -> float:
        """How much of the score one side's patch shares account for, in [0, 1].

        ``1 − |score − Σ shares| / |score|``, clipped: the rest (CLS term, baseline score) and the gap
        both count as unexplained. ``side=None``: the smaller of the two films' values.
        """
        if side is None:
            return min(self.completeness("query"), self.completeness("result"))
        missing = abs(self.score - float(self.shares(side).sum()))
        return float(np.clip(1.0 - missing / max(abs(self.score), 1e-12), 0.0, 1.0))


def decompose(
    cls: torch.Tensor, patches: torch.Tensor, grid: tuple[int, int], *, with_cls: bool
) -> PatchMap:
    """Exact split of the cosine of mean-pooled (or CLS+mean) raw features over the patches.

    With p = [cls;] mean_i a_i, the cosine is Σ_ij a_i·b_j / (N M ‖p_q‖ ‖p_r‖) (+ the CLS term
    cls_q·cls_r / (‖p_q‖ ‖p_r‖), the rest), so query patch i's share is a_i·p̂_r / (N ‖p_q‖); its base
    is s·a_i·p_q / (N ‖p_q‖²) and its effect the difference, a_i · ∂s/∂a_i.

    Args:
        cls: (2, W) final CLS tokens of query and result.
        patches: (2, N, W) final patch tokens (registers excluded).
        with_cls: the features are CLS+mean.
    """
    pooled = patches.double().mean(dim=1)  # (2, W)
    if with_cls:
        pooled = torch.cat([cls.double(), pooled], dim=1)
    units = F.normalize(pooled, dim=-1)
    score = float(units[0] @ units[1])
    width, parts = patches.shape[-1], []
    for side in (0, 1):
        tokens, scale = patches[side].double(), len(patches[side]) * pooled[side].norm()
        share = tokens @ units[1 - side][-width:] / scale  # (N,)
        base = score * (tokens @ units[side][-width:]) / scale  # (N,)
        parts.append((_grid(share - base, grid), _grid(base, grid)))
    rest = float(units[0][:-width] @ units[1][:-width]) if with_cls else 0.0
    (query, query_base), (result, result_base) = parts
    return PatchMap("decomposition", query, result, query_base, result_base, score, rest, rest)


def token_ig(
    pooled: torch.Tensor,
    patches: torch.Tensor,
    grid: tuple[int, int],
    head: Head,
    baseline: torch.Tensor,
    *,
    steps: int = 16,
) -> PatchMap:
    """Integrated gradients of the adapted score over the patch tokens behind the pooled mean.

    With u = head(p) un-normalised, the score is u_q·u_r / (‖u_q‖ ‖u_r‖). As in the decomposition the
    norms are held at the pair's values, so a side's score is h(p) = u(p)·û_other / ‖u‖ (no
    normalisation singularity on the path), integrated from the baseline μ ("an average film") to p.
    The pooled mean is linear in the tokens, so the pooled vector's attribution (computed once)
    splits exactly over them: share_i = (a_i − μ)/N · ḡ, ḡ the path-averaged gradient of h. The base
    is s × the same for h_self(p) = u(p)·û_self / ‖u‖, as in the decomposition. Σ shares + h(μ) =
    score up to the Riemann error of the head's nonlinear part (the gap).

    Args:
        pooled: (2, D) pooled features; their last W columns are the patch mean.
        patches: (2, N, W) final patch tokens.
        head: pooled features → un-normalised vectors (the adapter before its last L2 norm).
        baseline: (W,) the baseline patch token μ.
    """
    width, count = patches.shape[-1], patches.shape[1]
    with torch.no_grad():
        ends = head(pooled.float())  # (2, D')
    units = F.normalize(ends, dim=-1)
    score = float(units[0] @ units[1])
    alphas = torch.arange(1, steps + 1, dtype=torch.float32)[:, None] / steps  # (m, 1)
    parts, rests = [], []
    for side in (0, 1):
        weights = torch.stack([units[1 - side], units[side]], dim=1) / ends[side].norm()  # (D', 2)
        start = pooled[side].clone().float()
        start[-width:] = baseline
        path = (start + alphas * (pooled[side].float() - start)).requires_grad_(True)  # (m, D)
        values = head(path) @ weights  # (m, 2): h_other, h_self along the path
        grads = [
            torch.autograd.grad(values[:, k].sum(), path, retain_graph=k == 0)[0] for k in (0, 1)
        ]
        centred = patches[side].double() - baseline.double()  # (N, W)
        share, own = (centred @ g.mean(0)[-width:].double() / count for g in grads)  # (N,) each
        parts.append((_grid(share - score * own, grid), _grid(score * own, grid)))
        with torch.no_grad():
            rests.append(float(head(start[None])[0] @ weights[:, 0]))
    (query, query_base), (result, result_base) = parts
    return PatchMap(
        "token-ig", query, result, query_base, result_base, score, rests[0], rests[1], steps=steps
    )


def input_ig(forward: Head, images: torch.Tensor, patch: int, *, steps: int = 1) -> PatchMap:
    """Integrated gradients of the pair's score on the input pixels, summed per patch.

    The patch embedding is linear, so this equals gradient × (token − baseline token) on the input
    patch tokens. The baseline is each film with every pixel at its channel mean; ``steps=1`` is plain
    gradient × (input − baseline) at the input. Costs ``steps`` forward+backward passes of both films.

    Args:
        forward: (B, 3, S, S) normalised images → (B, D') vectors (backbone, then head).
        images: (2, 3, S, S) query and result.
        patch: patch side in pixels; the rests are the scores with that film fully masked.
    """
    base = images.mean(dim=(2, 3), keepdim=True).expand_as(images)  # (2, 3, S, S)
    alphas = torch.arange(1, steps + 1, dtype=images.dtype).repeat(2)[:, None, None, None] / steps
    starts, ends = base.repeat_interleave(steps, 0), images.repeat_interleave(steps, 0)
    path = (starts + alphas * (ends - starts)).requires_grad_(True)  # (2m, 3, S, S), α = 1 last
    vectors = F.normalize(forward(path), dim=-1)  # (2m, D')
    q, r = vectors[steps - 1].detach(), vectors[-1].detach()  # α = 1: the films themselves
    score = (vectors[:steps] @ r).sum() + (vectors[steps:] @ q).sum()
    (grads,) = torch.autograd.grad(score, path)
    mean_grads = grads.view(2, steps, *images.shape[1:]).mean(1)  # (2, 3, S, S)
    per_pixel = ((images - base) * mean_grads).sum(1).double()  # (2, S, S)
    pooled = F.avg_pool2d(per_pixel[:, None], patch)[:, 0] * patch * patch  # (2, rows, cols)
    with torch.no_grad():
        masked = F.normalize(forward(base.contiguous()), dim=-1)  # (2, D') every patch masked
    query, result = pooled.cpu().numpy()
    zeros = np.zeros_like(query)
    rest_q, rest_r = float(masked[0] @ r), float(masked[1] @ q)
    return PatchMap("input-ig", query, result, zeros, zeros, float(q @ r), rest_q, rest_r, steps)


def best_matches(patches: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(2, N, W) patch tokens → for each query patch the result patch of highest cosine (N,), and it (N,)."""
    a, b = F.normalize(patches.float(), dim=-1)
    cosine, index = (a @ b.T).max(dim=1)
    return index.cpu().numpy(), cosine.cpu().numpy()


def _grid(values: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """(N,) → (rows, cols) float64."""
    if values.numel() != grid[0] * grid[1]:
        raise ValueError(f"{values.numel()} patch tokens do not fill a {grid[0]}×{grid[1]} grid")
    return values.detach().cpu().double().reshape(grid).numpy()
