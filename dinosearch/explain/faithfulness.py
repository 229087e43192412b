"""Faithfulness, measured: does masking the patches a map ranks highest lower the score more than chance?

Masking a patch replaces its P×P pixels in the model input (after resize and crop) with the film's
per-channel mean, i.e. a flat patch of the film's mean grey; the film is then embedded again. This is
also the baseline that ``input_ig`` integrates from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dinosearch.explain.maps import PatchMap
from dinosearch.explain.pair import Explainer


@dataclass(frozen=True)
class MaskingTrial:
    """One pair's score with its top-ranked patches masked, and with as many random patches masked."""

    score: float  # nothing masked
    top: float  # both films' top-ranked patches masked
    random: float  # the same number of random patches masked in both
    top_query: float  # only the query's top patches masked (result intact)
    random_query: float
    top_result: float  # only the result's
    random_result: float

    @property
    def passed(self) -> bool:
        """Masking the top patches lowered the score more than masking random ones (both films)."""
        return self.top < self.random


def mask_patches(images: torch.Tensor, chosen: np.ndarray, patch: int) -> torch.Tensor:
    """(B, 3, S, S) normalised images, (B, k) patch indices (row-major) → masked copies.

    Each chosen patch's pixels become that film's per-channel mean over the whole (unmasked) film.
    """
    out = images.clone()
    cols = images.shape[-1] // patch
    means = images.mean(dim=(2, 3))  # (B, 3)
    for b, patches in enumerate(chosen):
        for i in patches:
            r, c = divmod(int(i), cols)
            out[b, :, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = means[b][
                :, None, None
            ]
    return out


def masking_trial(
    explainer: Explainer,
    images: torch.Tensor,
    patch_map: PatchMap,
    *,
    share: float = 0.25,
    rng: np.random.Generator,
) -> MaskingTrial:
    """Mask the ``share`` of patches ``patch_map`` ranks highest in each film, and a random set.

    Args:
        explainer: the explainer whose vectors ``patch_map`` explains (raw or adapted).
        images: (2, 3, S, S) the pair's normalised query and result.
        rng: draws the random patches (one set per film).
    Returns:
        The scores: unmasked (``patch_map.score``), both masked, and each film masked alone.
    """
    if not 0 < share < 1:
        raise ValueError(f"share {share} must be in (0, 1), e.g. 0.25")
    n = patch_map.query.size
    k = max(1, round(share * n))
    top = np.stack(
        [np.argsort(-m.ravel(), kind="stable")[:k] for m in (patch_map.query, patch_map.result)]
    )
    random = np.stack([rng.choice(n, k, replace=False) for _ in range(2)])  # (2, k)
    patch = explainer.backbone.patch_size
    masked = torch.cat([mask_patches(images, top, patch), mask_patches(images, random, patch)])
    q, r = explainer.vectors(images, cached=True)  # (D',) each, tokens cached by explaining
    q_top, r_top, q_rnd, r_rnd = explainer.vectors(masked)  # one batch of 4
    return MaskingTrial(
        score=patch_map.score,
        top=float(q_top @ r_top),
        random=float(q_rnd @ r_rnd),
        top_query=float(q_top @ r),
        random_query=float(q_rnd @ r),
        top_result=float(q @ r_top),
        random_result=float(q @ r_rnd),
    )


def summarise(trials: list[MaskingTrial]) -> dict[str, float]:
    """Share of pairs where the top patches' mask lowers the score more (both films, each alone),
    and the mean drops."""
    t = trials
    return {
        "pairs": len(t),
        "top_beats_random": float(np.mean([x.top < x.random for x in t])),
        "query_only": float(np.mean([x.top_query < x.random_query for x in t])),
        "result_only": float(np.mean([x.top_result < x.random_result for x in t])),
        "mean_drop_top": float(np.mean([x.score - x.top for x in t])),
        "mean_drop_random": float(np.mean([x.score - x.random for x in t])),
    }
