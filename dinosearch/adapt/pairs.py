"""Which images train and validate, and which pairs are positives: group split, view/MICLe pairs."""

from __future__ import annotations

import numpy as np

from dinosearch.adapt.config import TrainConfig


def split_by_group(
    groups: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows): whole groups, shuffled by ``seed``, until ``val_fraction`` is held out."""
    unique, codes = np.unique(groups, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    sizes = np.bincount(codes, minlength=len(unique))[order]
    n_val_groups = int(np.searchsorted(np.cumsum(sizes), val_fraction * len(groups)))
    is_val = np.zeros(len(unique), dtype=bool)
    is_val[order[:n_val_groups]] = True
    return np.flatnonzero(~is_val[codes]), np.flatnonzero(is_val[codes])


def _partners(groups: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each of ``rows``, a random other row of its group among ``rows`` (-1 if none)."""
    out = np.full(len(rows), -1, dtype=np.int64)
    order = np.argsort(groups[rows], kind="stable")
    sorted_groups = groups[rows][order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    for start, size in zip(starts, np.diff(np.r_[starts, len(rows)]), strict=True):
        if size > 1:
            shift = rng.integers(1, size, size=size)  # never 0: never the image itself
            out[order[start : start + size]] = rows[order[start + (np.arange(size) + shift) % size]]
    return out


def sample_pairs(
    rows: np.ndarray,
    groups: np.ndarray,
    num_views: int,
    config: TrainConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One positive pair per image of ``rows``, shuffled: (rows, views, partner rows, partner views).

    View pairs take two different views of one image; group pairs (``same_group_positives``) take
    any view of another image of the same group. In "only" mode images without a partner drop out.
    """
    rows = rows[rng.permutation(len(rows))]
    va = rng.integers(0, num_views, size=len(rows))
    vb = (va + rng.integers(1, max(num_views, 2), size=len(rows))) % num_views
    partner = rows.copy()
    if config.same_group_positives != "off":
        other = _partners(groups, rows, rng)
        use = other >= 0
        if config.same_group_positives == "mix":
            use &= rng.random(len(rows)) < config.group_pair_prob
        partner[use] = other[use]
        vb[use] = rng.integers(0, num_views, size=int(use.sum()))
        if config.same_group_positives == "only":
            rows, va, partner, vb = rows[use], va[use], partner[use], vb[use]
    return rows, va, partner, vb
