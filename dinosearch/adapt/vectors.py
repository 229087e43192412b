"""Features → optional adapter → L2-normalised float32 vectors: the only path from features to vectors.

Raw and adapted indexes, queries and evaluation all go through ``to_vectors`` so they stay comparable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from dinosearch.adapt.adapter import DomainAdapter


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise unit vectors; (N, D) → (N, D) float32 (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, eps), dtype=np.float32)


def to_vectors(
    features: np.ndarray, adapter: DomainAdapter | None = None, *, batch_size: int = 65536
) -> np.ndarray:
    """(N, D) backbone features → (N, D') unit vectors, through ``adapter`` when given (in eval mode)."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    if adapter is None:
        return l2_normalize(features)
    if features.shape[1] != adapter.in_dim:
        raise ValueError(
            f"features are {features.shape[1]}-d but the adapter expects {adapter.in_dim}-d; "
            "use an adapter trained on this backbone"
        )
    adapter = adapter.eval()
    device = next(adapter.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            chunk = torch.from_numpy(
                np.array(features[start : start + batch_size])
            )  # copy: may be a memmap
            out.append(adapter(chunk.to(device)).float().cpu().numpy())
    vectors = np.concatenate(out) if out else np.empty((0, adapter.out_dim), np.float32)
    return l2_normalize(vectors)
