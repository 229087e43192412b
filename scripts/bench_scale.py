"""Benchmark `dinosearch index` at 1M and 5M vectors: build time, memory, size, queries/s, recall@10.

    nice -n 10 .venv/bin/python scripts/bench_scale.py                  # 1M and 5M, 4 GiB budget
    .venv/bin/python scripts/bench_scale.py --sizes 200000 --hnsw-max 200000

Synthetic, seeded 384-d "backbone features" drawn around 1,000 centres with Zipf-distributed cluster
sizes and uneven spreads (``bench_index.clustered_chunks``), written in chunks to a features folder
(memory-mapped, as `dinosearch embed` leaves it). Each index is built by ``build_index`` — the code
behind `dinosearch index` — and compared with exact top-10 computed in NumPy chunks.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_index import FINGERPRINT, clustered_chunks

from dinosearch.adapt.vectors import to_vectors
from dinosearch.core.storage import write_json
from dinosearch.index import build_index, exact_search

DIM, SKEW = 384, 0.5


class PeakMemory:
    """Samples this process's anonymous resident memory (heap, faiss; not the memory-mapped file)."""

    def __init__(self) -> None:
        self.base = self.peak = anon_gib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, anon_gib())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def anon_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def write_folder(folder: Path, n: int) -> None:
    """A features folder of ``n`` clustered raw features, written chunk by chunk (no checksums)."""
    folder.mkdir(parents=True)
    out = np.lib.format.open_memmap(folder / "features.npy", "w+", np.float32, (n, DIM))
    start = 0
    for chunk in clustered_chunks(n, DIM, seed=2, skew=SKEW):
        out[start : start + len(chunk)] = chunk
        start += len(chunk)
    out.flush()
    del out
    ids = pd.Series(np.arange(n)).map("img{:08d}".format)
    pd.DataFrame({"id": ids, "path": "/data/" + ids + ".png"}).to_parquet(
        folder / "metadata.parquet", index=False
    )
    backbone = {"name": "bench", "fingerprint": FINGERPRINT, "random_init": True, "embed_dim": DIM}
    manifest = {"kind": "features", "backbone": backbone, "count": n, "dim": DIM}
    write_json(folder / "manifest.json", {**manifest, "images": f"bench-{n}", "checksums": {}})


def ground_truth(features: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact top-k ids (B, k) over (N, D) raw features, normalised and scanned 2^18 rows at a time."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.empty((len(queries), 0), np.int64)
    for start in range(0, len(features), 1 << 18):
        s, i = exact_search(to_vectors(features[start : start + (1 << 18)]), queries, k)
        best_s, best_i = np.hstack([best_s, s]), np.hstack([best_i, i + start])
        top = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, top, 1), np.take_along_axis(best_i, top, 1)
    return best_i


def measure(handle, queries: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """(recall@10, queries/s batched, queries/s one at a time)."""
    t = time.perf_counter()
    _, found = handle.search(queries, 10)
    batched = len(queries) / (time.perf_counter() - t)
    t = time.perf_counter()
    for q in queries[:200]:
        handle.search(q[None], 10)
    single = 200 / (time.perf_counter() - t)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    return float(recall), batched, single


def bench(features: Path, root: Path, kind: str, budget: float, queries, truth) -> None:  # type: ignore[no-untyped-def]
    out = root / f"index-{kind}"
    with PeakMemory() as mem:
        t = time.perf_counter()
        handle = build_index(features, out, index_type=kind, memory_budget_gb=budget)  # type: ignore[arg-type]
        build = time.perf_counter() - t
    m = handle.manifest
    size = (handle.version_dir / "index.faiss").stat().st_size / 2**30
    print(
        f"{kind} → {m['index_type']} {m['params']}: build {build:.0f} s (on {m['built_on']}), "
        f"index file {size:.2f} GiB (estimate {m['estimated_memory_gb']:.2f}), peak anonymous "
        f"memory {mem.peak:.2f} GiB (+{mem.peak - mem.base:.2f} over the queries and truth)"
    )
    recall, batched, single = measure(handle, queries, truth)
    print(
        f"  defaults: recall@10 {recall:.3f}; {batched:,.0f} q/s batched, {single:,.0f} q/s single"
    )
    for params in sweep(m["index_type"], m["params"]):
        handle.set_search_params(**params)
        recall, batched, single = measure(handle, queries, truth)
        print(
            f"  {params}: recall@10 {recall:.3f}; {batched:,.0f} q/s batched, {single:,.0f} single"
        )
    del handle
    shutil.rmtree(out)


def sweep(kind: str, p: dict) -> list[dict]:  # type: ignore[type-arg]
    """Search settings around the defaults, to show what recall costs."""
    if kind == "ivf-pq" and p.get("refine", "none") == "none":  # no re-ranking copy: no k_factor
        return [{"nprobe": p["nprobe"] // 2}, {"nprobe": p["nprobe"] * 2}]
    if kind == "ivf-pq":
        nprobe, k = int(p["nprobe"]), int(p["k_factor"])
        grid = [(nprobe // 2, k // 4), (nprobe // 2, k), (nprobe, k // 2), (nprobe, k * 2)]
        return [{"nprobe": a, "k_factor": b} for a, b in [*grid, (nprobe // 2, k * 2)]]
    if kind == "ivf-flat":
        return [{"nprobe": p["nprobe"] // 2}]
    if kind == "hnsw":
        return [{"ef_search": p["ef_search"] // 2}, {"ef_search": p["ef_search"] * 2}]
    return []


def run(n: int, args: argparse.Namespace) -> None:
    root = Path(args.dir) / f"n{n}"
    shutil.rmtree(root, ignore_errors=True)
    print(f"== {n:,} × {DIM}-d, memory budget {args.budget_gb} GiB, {args.queries} queries")
    t = time.perf_counter()
    write_folder(root / "features", n)
    print(f"generate + write features: {time.perf_counter() - t:.0f} s")
    features = np.load(root / "features" / "features.npy", mmap_mode="r")
    queries = to_vectors(np.concatenate(list(clustered_chunks(args.queries, DIM, 3, skew=SKEW))))
    t = time.perf_counter()
    truth = ground_truth(features, queries)
    print(f"exact top-10 in NumPy: {time.perf_counter() - t:.0f} s")
    for kind in args.types.split(","):
        if kind == "hnsw" and n > args.hnsw_max:
            print(f"hnsw: skipped above --hnsw-max {args.hnsw_max:,} (see docs/scaling.md)")
            continue
        bench(root / "features", root, kind, args.budget_gb, queries, truth)
    shutil.rmtree(root)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000000,5000000", help="comma-separated vector counts")
    p.add_argument("--budget-gb", type=float, default=4.0, help="memory budget for the index")
    p.add_argument("--types", default="auto,hnsw", help="index types to build at each size")
    p.add_argument("--hnsw-max", type=int, default=1_000_000, help="build HNSW only up to here")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--dir", default=".bench_scale", help="scratch folder (removed afterwards)")
    args = p.parse_args(argv)
    for n in (int(x) for x in args.sizes.split(",")):
        run(n, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
