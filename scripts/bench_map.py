"""Build time of the collection map (``explain.collection.layout``: UMAP, 2-D) for N vectors.

Seeded clustered unit vectors stand in for an index (the layout sees only vectors); the first
call also pays numba's compile time, reported apart on a small warm-up set.

    python scripts/bench_map.py --count 100000 --dim 384
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from dinosearch.explain.collection import layout


def clustered(n: int, dim: int, clusters: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    args = p.parse_args()
    start = time.perf_counter()
    layout(clustered(500, args.dim))
    warm = time.perf_counter() - start
    x = clustered(args.count, args.dim)
    start = time.perf_counter()
    xy, method = layout(x)
    took = time.perf_counter() - start
    print(
        f"{method} layout of {args.count} × {args.dim} vectors: {took:.1f} s "
        f"(warm-up incl. numba compile, 500 vectors: {warm:.1f} s; {os.cpu_count()} CPUs, shared)"
    )


if __name__ == "__main__":
    main()
