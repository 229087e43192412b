"""Training-free baselines from raw features: mean-centring and PCA whitening fitted on the gallery."""

from __future__ import annotations

import numpy as np

from dinosearch.adapt.vectors import l2_normalize


def fit_whitening(
    features: np.ndarray, *, dim: int | None = None, shrinkage: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """PCA whitening fitted on (G, D) raw features → (mean (D,), projection (D, d)).

    Components with negligible variance are dropped; ``shrinkage`` adds that fraction of the mean
    eigenvalue before the inverse square root (0 = plain whitening).
    """
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    eigval, eigvec = np.linalg.eigh(centred.T @ centred / max(len(x) - 1, 1))
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    keep = int((eigval > eigval[0] * 1e-9).sum()) if len(eigval) else 0
    keep = min(keep, dim) if dim else keep
    eigval, eigvec = eigval[:keep], eigvec[:, :keep]
    scale = 1.0 / np.sqrt(eigval + shrinkage * eigval.mean())
    return mean.astype(np.float32), (eigvec * scale).astype(np.float32)


def baseline_vectors(
    raw_features: np.ndarray, gallery_rows: np.ndarray, *, whiten_dim: int | None = None
) -> dict[str, np.ndarray]:
    """(N, D) raw features → unit vectors raw, centred, whitened (fitted on the gallery rows)."""
    raw = np.asarray(raw_features, dtype=np.float32)
    gallery = raw[gallery_rows]
    mean, proj = fit_whitening(gallery, dim=whiten_dim)
    return {
        "raw": l2_normalize(raw),
        "centred": l2_normalize(raw - gallery.mean(axis=0)),
        "whitened": l2_normalize((raw - mean) @ proj),
    }
