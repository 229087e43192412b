"""info_nce against pytorch-metric-learning's NTXentLoss, a slow SimCLR loop, and its properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dinosearch.adapt.losses import info_nce


def slow_nt_xent(
    a: torch.Tensor, b: torch.Tensor, t: float, groups: list[int] | None = None
) -> float:
    """SimCLR Algorithm 1 as written: l(i, j) = -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t),
    averaged over the 2N ordered positive pairs; same-group k (other than j) skipped when given."""
    z = [F.normalize(v, dim=0) for v in torch.cat([a, b]).double()]
    n = a.shape[0]
    g = None if groups is None else groups + groups
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denom = 0.0
        for k in range(2 * n):
            if k == i or (g is not None and k != j and g[k] == g[i]):
                continue
            denom += math.exp(float(z[i] @ z[k]) / t)
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / denom)
    return total / (2 * n)


@pytest.mark.parametrize("n,d,t", [(2, 3, 0.5), (8, 16, 0.1), (5, 4, 0.07)])
def test_matches_slow_simclr_loop(n: int, d: int, t: float) -> None:
    gen = torch.Generator().manual_seed(n * d)
    a, b = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
    assert info_nce(a, b, t).item() == pytest.approx(slow_nt_xent(a, b, t), rel=1e-5)


def test_matches_pytorch_metric_learning() -> None:
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, 32, generator=gen), torch.randn(16, 32, generator=gen)
    labels = torch.arange(16).repeat(2)  # a[i] and b[i] share a label: 2N-2 negatives each
    expected = losses.NTXentLoss(temperature=0.1)(torch.cat([a, b]), labels)
    assert info_nce(a, b, 0.1).item() == pytest.approx(expected.item(), rel=1e-5)


def test_symmetric_and_scale_invariant() -> None:
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(10, 8, generator=gen), torch.randn(10, 8, generator=gen)
    assert info_nce(a, b).item() == pytest.approx(info_nce(b, a).item(), rel=1e-6)
    assert info_nce(3 * a, b).item() == pytest.approx(info_nce(a, b).item(), rel=1e-5)


@pytest.mark.parametrize("n", [2, 7, 64])
def test_all_embeddings_coincide(n: int) -> None:
    x = torch.ones(n, 5)
    assert info_nce(x, x, 0.1).item() == pytest.approx(math.log(2 * n - 1), rel=1e-6)


def test_perfect_pairs_go_to_zero_and_gradients_stay_finite() -> None:
    a = torch.eye(6, requires_grad=True)
    loss = info_nce(a, torch.eye(6), temperature=0.01)  # logits of 100: naive exp would overflow
    loss.backward()
    assert loss.item() < 1e-6 and torch.isfinite(a.grad).all()


def test_groups_mask_same_group_negatives() -> None:
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    groups = [0, 0, 1, 2, 2, 2]
    got = info_nce(a, b, 0.2, groups=torch.tensor(groups)).item()
    assert got == pytest.approx(slow_nt_xent(a, b, 0.2, groups), rel=1e-5)
    distinct = info_nce(a, b, 0.2, groups=torch.arange(6)).item()
    assert distinct == pytest.approx(info_nce(a, b, 0.2).item(), rel=1e-6)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        info_nce(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2 pairs"):
        info_nce(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)
