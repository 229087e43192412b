"""Concurrent readers during republishing: every query succeeds and answers from one whole version.

Two feature sets (40 and 60 rows, other ids) are published in turn; each reader process refreshes
its ``VectorSearcher`` before every query and checks the answer against the one its current
version's features give. Used by kill_driver.py (scenario "concurrent").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from forking import finish, start
from helpers import clustered_vectors, write_features_folder

from dinosearch.index import build_index
from dinosearch.search import VectorSearcher

K = 5
Answer = tuple[list, list, list]  # ids, scores, metadata ids of each query


def answers(searcher: VectorSearcher, queries: np.ndarray) -> Answer:
    results = searcher.search_vectors(queries, K)
    return (
        [r.ids.tolist() for r in results],
        [r.scores.tolist() for r in results],
        [r.rows["id"].tolist() for r in results],
    )


def read_loop(
    index: Path, queries: np.ndarray, expected: dict[str, Answer], done: Path, seconds: float
) -> dict[str, Any]:
    """Query until the writer is done (or ``seconds`` pass); count answers and failures."""
    searcher = VectorSearcher(index)
    served, versions, failures = 0, set(), []
    deadline = time.monotonic() + seconds
    while not done.exists() and time.monotonic() < deadline:
        try:
            searcher.refresh()
            got = answers(searcher, queries)
            source = searcher.manifest["features"]["path"]
            if got != expected[source]:
                failures.append(f"{searcher.handle.version}: answers of no single version")
            versions.add(searcher.handle.version)
            served += 1
        except Exception as e:  # any failure is a finding
            failures.append(f"{type(e).__name__}: {e}")
        time.sleep(0.002)  # leave the writer a share of a 2-core machine
    return {"served": served, "versions": sorted(versions), "failures": failures}


def publish_loop(index: Path, sources: list[Path], times: int) -> int:
    for i in range(times):
        build_index(sources[i % len(sources)], index, keep=3)
        time.sleep(0.1)  # readers query each version for a while
    return times


def concurrent_scenario(
    work: Path,
    backbone_info: dict,
    *,
    readers: int = 3,
    publishes: int = 12,
    seconds: float = 30.0,
) -> dict[str, Any]:
    """``readers`` processes query while another publishes ``publishes`` versions."""
    small, large = work / "features-40", work / "features-60"
    for folder, n, seed in ((small, 40, 1), (large, 60, 2)):
        meta = {"id": [f"{folder.name}-{j}" for j in range(n)], "path": ["/x.png"] * n}
        write_features_folder(folder, clustered_vectors(n, 32, seed=seed) * 3, meta, backbone_info)
    queries = clustered_vectors(K, 32, seed=3)
    expected = {}
    for folder in (small, large):
        scratch = work / f"expect-{folder.name}"
        build_index(folder, scratch)
        expected[str(folder)] = answers(VectorSearcher(scratch), queries)
    index, done = work / "idx", work / "done"
    build_index(small, index)
    began = time.perf_counter()
    children = [
        start(lambda: read_loop(index, queries, expected, done, seconds)) for _ in range(readers)
    ]
    writer = finish(start(lambda: publish_loop(index, [large, small], publishes)), seconds)
    done.touch()
    outcomes = [finish(c, seconds) for c in children]
    failures = [f"writer: {writer.status} {writer.value}"] if writer.status != "ok" else []
    failures += [f"reader: {o.status} {o.value}" for o in outcomes if o.status != "ok"]
    ok = [o.value for o in outcomes if o.status == "ok"]
    return {
        "readers": readers,
        "publishes": writer.value if writer.status == "ok" else 0,
        "served": sum(r["served"] for r in ok),  # batches of K queries
        "queries": len(queries) * sum(r["served"] for r in ok),
        "versions_seen": min((len(r["versions"]) for r in ok), default=0),
        "seconds": round(time.perf_counter() - began, 1),
        "failures": (failures + [f for r in ok for f in r["failures"]])[:20],
    }
