"""Paired bootstrap intervals of per-query metrics, resampling whole groups (patients)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dinosearch.evaluate.config import N_BOOT


def bootstrap(
    per_method: dict[str, dict[str, np.ndarray]],
    groups: np.ndarray | None,
    comparisons: Sequence[tuple[str, str]],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, dict[str, float]]]:
    """Paired bootstrap over queries (whole groups when given): means and CIs, differences too.

    Returns ``{method or "a-b": {metric: {"mean", "lo", "hi"}}}``; every method and difference is
    computed on the same resamples, so differences are paired.
    """
    names = [(m, metric) for m, values in per_method.items() for metric in values]
    x = np.stack([per_method[m][metric] for m, metric in names], axis=1)  # (Q, M)
    valid = ~np.isnan(x)
    x = np.where(valid, x, 0.0)
    n_q = len(x)
    codes = (
        np.arange(n_q) if groups is None else np.unique(groups.astype(str), return_inverse=True)[1]
    )
    n_groups = int(codes.max()) + 1 if n_q else 0
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(
        n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot
    )  # (B, n_groups)
    weights = draws[:, codes].astype(np.float64)  # (B, Q)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (weights @ x) / (weights @ valid)  # (B, M)
        point = x.sum(axis=0) / valid.sum(axis=0)
    column = {key: j for j, key in enumerate(names)}
    alpha = (1 - level) / 2 * 100

    def interval(b: np.ndarray, p: float) -> dict[str, float]:
        lo, hi = (
            np.nanpercentile(b, [alpha, 100 - alpha]) if np.isfinite(b).any() else (np.nan,) * 2
        )
        return {"mean": float(p), "lo": float(lo), "hi": float(hi)}

    out: dict[str, dict[str, dict[str, float]]] = {}
    for (m, metric), j in column.items():
        out.setdefault(m, {})[metric] = interval(boot[:, j], point[j])
    for a, b in comparisons:
        key = f"{a}-{b}"
        for metric in per_method[a]:
            ja, jb = column[(a, metric)], column[(b, metric)]
            out.setdefault(key, {})[metric] = interval(
                boot[:, ja] - boot[:, jb], point[ja] - point[jb]
            )
    return out
