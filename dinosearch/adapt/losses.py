"""Contrastive loss: symmetric InfoNCE / NT-Xent with in-batch negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    temperature: float = 0.1,
    *,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """NT-Xent (SimCLR, https://arxiv.org/abs/2002.05709) over N positive pairs ``(a[i], b[i])``.

    Both sides are L2-normalised and stacked into 2N embeddings. Each embedding's positive is its partner;
    its negatives are the other 2N-2 embeddings, **same-side ones included** (as SimCLR and
    pytorch-metric-learning's ``NTXentLoss``): small batches get twice the negatives of the CLIP-style
    cross-side-only form. The loss is the mean over all 2N anchors of a cross-entropy, so it is symmetric
    in ``a`` and ``b``. When every embedding coincides it equals ``log(2N - 1)``.

    Args:
        a: (N, D) embeddings of the first views.
        b: (N, D) embeddings of the second views, row-aligned with ``a``.
        temperature: softmax temperature τ > 0.
        groups: optional (N,) integer group ids (e.g. patient); other pairs of the same group are not
            used as negatives (they are likely positives). The pair's own partner stays the positive.

    Returns:
        Scalar loss tensor on ``a``'s device.

    Raises:
        ValueError: mismatched shapes, N < 2, or τ ≤ 0.

    Example:
        >>> a, b = torch.randn(8, 32), torch.randn(8, 32)
        >>> loss = info_nce(a, b, temperature=0.1)
        >>> loss.shape
        torch.Size([])
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"info_nce needs two (N, D) tensors of one shape, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    n = a.shape[0]
    if n < 2:
        raise ValueError(
            f"info_nce needs at least 2 pairs for in-batch negatives, got {n}; raise the batch size"
        )
    if temperature <= 0:
        raise ValueError(f"temperature {temperature} must be > 0 (typical: 0.05-0.2)")
    z = F.normalize(torch.cat([a, b]).float(), dim=1)  # (2N, D)
    logits = z @ z.T / temperature  # (2N, 2N)
    idx = torch.arange(2 * n, device=z.device)
    targets = (idx + n) % (2 * n)  # a[i] ↔ b[i]
    excluded = torch.eye(2 * n, dtype=torch.bool, device=z.device)  # self-similarity is no negative
    if groups is not None:
        g = torch.cat([groups, groups]).to(z.device)
        excluded |= g[:, None] == g[None, :]
        excluded[idx, targets] = False
    logits = logits.masked_fill(excluded, float("-inf"))
    return F.cross_entropy(logits, targets)
