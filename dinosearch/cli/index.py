"""``dinosearch index``: a features folder (+ adapter) → a published FAISS index version."""

from __future__ import annotations

import argparse
import time

from dinosearch.index import INDEX_TYPES, REFINES, build_index, current_version


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--features", required=True, help="features folder written by `dinosearch embed`"
    )
    p.add_argument(
        "--adapter", default=None, help="trained adapter folder (omit for the raw index)"
    )
    p.add_argument("--out", required=True, help="index folder, e.g. indexes/NAME")
    p.add_argument(
        "--index-type",
        choices=INDEX_TYPES,
        default="auto",
        help="exact flat, ivf-flat, ivf-pq, hnsw, or auto (by size and memory budget)",
    )
    p.add_argument(
        "--memory-budget-gb",
        type=float,
        default=8.0,
        help="memory the index may use; steers --index-type auto",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="add these (new) images to the live version as a new version",
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="with --append: leave out ids the index already holds instead of refusing them",
    )
    p.add_argument("--nlist", type=int, default=None, help="IVF: number of lists")
    p.add_argument("--nprobe", type=int, default=None, help="IVF: lists scanned per query")
    p.add_argument(
        "--pq-m", type=int, default=None, help="IVF-PQ: sub-quantizers (bytes per vector)"
    )
    p.add_argument(
        "--refine",
        choices=REFINES,
        default=None,
        help="IVF-PQ: copy that re-ranks candidates (default: the finest the budget allows)",
    )
    p.add_argument(
        "--k-factor",
        type=float,
        default=None,
        help="IVF-PQ with --refine: candidates re-ranked per result wanted (default 16)",
    )
    p.add_argument("--hnsw-m", type=int, default=None, help="HNSW: links per node")
    p.add_argument("--ef-search", type=int, default=None, help="HNSW: search depth")
    p.add_argument("--keep", type=int, default=3, help="published versions to keep")
    p.add_argument(
        "--no-gpu", action="store_true", help="build on the CPU even when faiss sees a GPU"
    )


def run(args: argparse.Namespace) -> int:
    names = {
        "nlist": args.nlist,
        "nprobe": args.nprobe,
        "m": args.pq_m,
        "refine": args.refine,
        "k_factor": args.k_factor,
        "M": args.hnsw_m,
        "ef_search": args.ef_search,
    }
    params = {k: v for k, v in names.items() if v is not None}
    if args.skip_existing and not args.append:
        raise ValueError("--skip-existing only applies with --append; add --append")
    before = current_version(args.out) if args.append else None
    start = time.perf_counter()
    handle = build_index(
        args.features,
        args.out,
        adapter_dir=args.adapter,
        index_type=args.index_type,
        memory_budget_gb=args.memory_budget_gb,
        append=args.append,
        skip_existing=args.skip_existing,
        params=params or None,
        use_gpu=False if args.no_gpu else None,
        keep=args.keep,
    )
    m = handle.manifest
    if handle.random_init:
        print(
            f"warning: backbone {m['backbone']['fingerprint']} is randomly initialised: "
            "these vectors are untrained and search results are not meaningful"
        )
    adapter = m["adapter"]["fingerprint"] if m["adapter"] else "none (raw)"
    if args.append:  # --skip-existing with nothing new leaves the live version as it was
        added = m["appended"][-1].get("added") if handle.version != before else 0
        print(f"appended {added} new vectors from {args.features}")
    print(
        f"indexed {handle.count} vectors ({handle.dim}-d, {m['index_type']} {m['params']}, "
        f"built on {m['built_on']}, adapter {adapter}) in {time.perf_counter() - start:.1f}s "
        f"→ {args.out} version {handle.version}"
    )
    return 0
