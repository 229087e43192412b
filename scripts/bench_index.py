"""Benchmark index rebuild, exact search and metadata fetch, and an approximate index at scale.

    .venv/bin/python scripts/bench_index.py                      # 100k rebuild + 1M approximate
    .venv/bin/python scripts/bench_index.py --big 200000 --big-type ivf-pq

Synthetic, seeded data: clustered 384-d "backbone features" with id/path/label/view/patient metadata.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter, load_adapter, save_adapter
from dinosearch.adapt.vectors import to_vectors
from dinosearch.core.storage import sha256_file, write_json
from dinosearch.index import (
    build_index,
    choose_index,
    exact_search,
    open_index,
)
from dinosearch.index.assemble import train_add
from dinosearch.search import VectorSearcher

FINGERPRINT = "bench|random(seed=0)|224px|cls"


def clustered(
    n: int, dim: int, seed: int, clusters: int = 1000, chunk: int = 100_000
) -> np.ndarray:
    """(n, dim) float32 points around seeded centres (generated in chunks to bound memory)."""
    return np.concatenate(list(clustered_chunks(n, dim, seed, clusters, chunk)))


def clustered_chunks(
    n: int,
    dim: int,
    seed: int,
    clusters: int = 1000,
    chunk: int = 100_000,
    skew: float = 0.0,
) -> Iterator[np.ndarray]:
    """``clustered``'s points, (≤ chunk, dim) float32 at a time.

    ``skew`` > 0 makes the collection less tidy, as real archives are: cluster sizes follow a Zipf law
    of that exponent (a few common findings, a long tail) and each cluster has its own spread
    (noise scale 0.6–1.4). ``skew`` = 0 gives the even, equal-spread clusters of ``clustered``.
    """
    centres = np.random.default_rng(12345).normal(size=(clusters, dim)).astype(np.float32)
    weights = 1.0 / np.arange(1, clusters + 1) ** skew
    spread = np.random.default_rng(54321).uniform(0.6, 1.4, clusters).astype(np.float32)
    rng = np.random.default_rng(seed)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        if skew:
            which = rng.choice(clusters, m, p=weights / weights.sum())
            noise = rng.normal(size=(m, dim)).astype(np.float32) * spread[which, None]
        else:
            which = rng.integers(0, clusters, m)
            noise = rng.normal(size=(m, dim)).astype(np.float32)
        yield centres[which] + noise


def write_features(folder: Path, feats: np.ndarray) -> None:
    n = len(feats)
    folder.mkdir(parents=True)
    np.save(folder / "features.npy", feats)
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "id": [f"img{i:07d}" for i in range(n)],
            "path": [f"/data/img{i:07d}.png" for i in range(n)],
            "label": rng.choice(["normal", "effusion", "pneumonia", "covid19"], n),
            "view": rng.choice(["PA", "AP", "unknown"], n),
            "patient_id": [f"p{i // 3}" for i in range(n)],
        }
    ).to_parquet(folder / "metadata.parquet", index=False)
    backbone = {
        "name": "bench",
        "fingerprint": FINGERPRINT,
        "random_init": True,
        "embed_dim": feats.shape[1],
    }
    write_json(
        folder / "manifest.json",
        {
            "kind": "features",
            "backbone": backbone,
            "count": n,
            "dim": int(feats.shape[1]),
            "images": "bench",
            "checksums": {f: sha256_file(folder / f) for f in ("features.npy", "metadata.parquet")},
        },
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def rebuild(n: int, dim: int, root: Path) -> None:
    print(
        f"== rebuild the adapted index from {n:,} stored {dim}-d features (threads: {faiss.omp_get_max_threads()})"
    )
    feats = clustered(n, dim, seed=0)
    write_features(root / "features", feats)
    adapter = DomainAdapter(AdapterConfig(in_dim=dim))  # default bottleneck 512
    adapter.set_standardization(feats)
    save_adapter(
        adapter,
        root / "adapter",
        backbone_fingerprint=FINGERPRINT,
        train_config={},
        data={},
        metrics={},
    )
    del feats
    t = time.perf_counter()
    handle = build_index(root / "features", root / "index", adapter_dir=root / "adapter")
    total = time.perf_counter() - t
    print(
        f"build_index (read features + adapter forward + normalise + Flat + write + checksums + publish): "
        f"{total:.2f} s  [{handle.manifest['index_type']}, {handle.count:,} vectors]  "
        f"target < 10 s: {'OK' if total < 10 else 'MISSED'}"
    )
    from dinosearch.features.folder import load_features

    t = time.perf_counter()
    fs = load_features(root / "features")
    raw = np.asarray(fs.features)
    t1 = time.perf_counter()
    vectors = to_vectors(raw, load_adapter(root / "adapter", backbone_fingerprint=FINGERPRINT))
    t2 = time.perf_counter()
    print(f"  of which: read features {t1 - t:.2f} s, adapter forward + normalise {t2 - t1:.2f} s")
    t = time.perf_counter()
    opened = open_index(root / "index")
    print(f"open_index with checksum verification: {time.perf_counter() - t:.2f} s")
    searcher = VectorSearcher(root / "index")
    queries = vectors[np.random.default_rng(1).choice(n, 200, replace=False)] + 0.01
    queries = to_vectors(queries)
    t = time.perf_counter()
    for q in queries[:50]:
        opened.search(q[None], 10)
    single = (time.perf_counter() - t) / 50
    t = time.perf_counter()
    scores, ids = opened.search(queries, 10)
    batched = (time.perf_counter() - t) / len(queries)
    t = time.perf_counter()
    for row in ids[:50]:
        opened.rows(row)
    fetch = (time.perf_counter() - t) / 50
    t = time.perf_counter()
    for q in queries[:50]:
        searcher.search_vectors(q, 10)
    full = (time.perf_counter() - t) / 50
    t = time.perf_counter()
    searcher.search_vectors(
        queries[:50], 10, filters={"view": "PA"}, exclude_group=("patient_id", "p1")
    )
    filtered = (time.perf_counter() - t) / 50
    print(
        f"exact search k=10: batch 1 {ms(single)} / query; batch {len(queries)} {ms(batched)} / query"
    )
    print(
        f"metadata fetch (Arrow take of 10 rows → pandas): {ms(fetch)} / query "
        f"({fetch / single:.2f}× the batch-1 search)"
    )
    print(
        f"Searcher.search_vectors end to end (search + rows + ranks): {ms(full)} / query; "
        f"with a filter and a group exclusion (batch 50): {ms(filtered)} / query"
    )


def approximate(n: int, dim: int, kind: str, nq: int) -> None:
    print(f"== approximate index: {n:,} × {dim}-d, {kind}")
    t = time.perf_counter()
    vectors = to_vectors(clustered(n, dim, seed=2))
    print(f"generate + normalise: {time.perf_counter() - t:.1f} s")
    queries = to_vectors(clustered(nq, dim, seed=3))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    kind, params = choose_index(n, dim, kind)  # type: ignore[arg-type]
    t = time.perf_counter()
    index, where = train_add(kind, params, vectors, None)
    build = time.perf_counter() - t
    with tempfile.NamedTemporaryFile(suffix=".faiss") as f:
        faiss.write_index(index, f.name)
        size = Path(f.name).stat().st_size / 2**30
    print(
        f"build ({where}, {params}): {build:.1f} s; index size {size:.2f} GiB; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB "
        f"(was {rss0:.1f} GiB with the vectors alone)"
    )
    t = time.perf_counter()
    _, truth = exact_search(vectors, queries, 10)
    exact_t = time.perf_counter() - t
    t = time.perf_counter()
    _, found = index.search(queries, 10)
    batch_t = time.perf_counter() - t
    t = time.perf_counter()
    for q in queries[:100]:
        index.search(q[None], 10)
    single_t = (time.perf_counter() - t) / 100
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    print(
        f"queries/s: batched {nq / batch_t:,.0f} (batch {nq}), single {1 / single_t:,.0f}; "
        f"exact ground truth {exact_t / nq * 1e3:.1f} ms / query (numpy, batch {nq})"
    )
    print(f"recall@10 against exact on {nq} queries: {recall:.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="vectors for the rebuild benchmark")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument(
        "--big", type=int, default=1_000_000, help="vectors for the approximate index (0: skip)"
    )
    p.add_argument("--big-type", default="ivf-flat", choices=["ivf-flat", "ivf-pq", "hnsw", "auto"])
    p.add_argument("--queries", type=int, default=1000, help="queries for recall and throughput")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        rebuild(args.n, args.dim, Path(tmp))
    if args.big:
        approximate(args.big, args.dim, args.big_type, args.queries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
