"""Benchmark the audit's embedding near-duplicate search (``audit.pairs.embedding_pairs``) at scale.

N seeded random 384-d unit vectors, of which P are planted near-duplicates of other vectors
(cosine ≈ 0.97 after added noise), in an IVF-flat index: the range search runs chunk by chunk over all
N vectors as queries. Prints time, peak resident memory and the recall of the planted pairs.

    python scripts/bench_audit.py --n 1000000 --planted 10000
"""

from __future__ import annotations

import argparse
import resource
import time

import faiss
import numpy as np

from dinosearch.audit.pairs import embedding_pairs


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_vectors(
    n: int, planted: int, dim: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) unit vectors whose last ``planted`` rows copy random earlier rows + noise; → (vectors, source rows)."""
    rng = np.random.default_rng(seed)
    vectors = np.empty((n, dim), np.float32)
    for start in range(0, n, 1 << 16):  # in blocks: no float64 copy of the whole set
        stop = min(n, start + (1 << 16))
        vectors[start:stop] = unit(rng.standard_normal((stop - start, dim), dtype=np.float32))
    sources = rng.choice(n - planted, planted, replace=False)
    jitter = rng.standard_normal((planted, dim), dtype=np.float32) * noise / np.sqrt(dim)
    vectors[n - planted :] = unit(vectors[sources] + jitter)
    return vectors, sources


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--planted", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--nprobe", type=int, default=4)
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--chunk", type=int, default=4096)
    p.add_argument("--noise", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    t0 = time.perf_counter()
    vectors, sources = make_vectors(a.n, a.planted, a.dim, a.noise, a.seed)
    t1 = time.perf_counter()
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(a.dim), a.dim, a.nlist, faiss.METRIC_INNER_PRODUCT)
    train = vectors[
        np.random.default_rng(a.seed).choice(a.n, min(a.n, 40 * a.nlist), replace=False)
    ]
    index.train(train)
    for start in range(0, a.n, 1 << 16):
        index.add(vectors[start : start + (1 << 16)])
    index.nprobe = a.nprobe
    t2 = time.perf_counter()
    (lo, hi, _), method = embedding_pairs(index, vectors, a.threshold, chunk=a.chunk)
    t3 = time.perf_counter()
    found = set(zip(lo.tolist(), hi.tolist(), strict=True))
    copies = np.arange(a.n - a.planted, a.n)
    truth = set(
        zip(np.minimum(sources, copies).tolist(), np.maximum(sources, copies).tolist(), strict=True)
    )
    cos = np.einsum("nd,nd->n", vectors[sources], vectors[copies])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"n={a.n} dim={a.dim} planted={a.planted} (cosine {cos.min():.3f}–{cos.max():.3f}) "
        f"IVF-flat nlist={a.nlist} nprobe={a.nprobe} threshold={a.threshold} chunk={a.chunk} "
        f"threads={faiss.omp_get_max_threads()}\n"
        f"data {t1 - t0:.1f}s · index build {t2 - t1:.1f}s · {method} over all {a.n} queries "
        f"{t3 - t2:.1f}s ({a.n / (t3 - t2):,.0f} queries/s)\n"
        f"pairs found {len(found)} · planted recall {len(found & truth) / len(truth):.4f} · "
        f"pairs that are not planted {len(found - truth)} · peak RSS {peak:.2f} GiB "
        f"(the vectors alone: {vectors.nbytes / 2**30:.2f} GiB, the IVF copy as much again)"
    )


if __name__ == "__main__":
    main()
