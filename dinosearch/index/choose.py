"""Choose the FAISS index type and its parameters from the vector count, dimension and memory budget."""

from __future__ import annotations

import math
from typing import Any, Literal

IndexType = Literal["auto", "flat", "ivf-flat", "ivf-pq", "hnsw"]
INDEX_TYPES = ("auto", "flat", "ivf-flat", "ivf-pq", "hnsw")
EXACT_MAX = 250_000  # "auto" searches exactly up to here: a flat scan of 250k × 384-d is a few ms


def choose_index(
    n: int,
    dim: int,
    index_type: IndexType = "auto",
    memory_budget_gb: float = 8.0,
    params: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Pick the index type and its parameters for ``n`` vectors of ``dim``.

    "auto": exact Flat up to ``EXACT_MAX`` vectors (when they fit the budget), IVF-Flat above it while
    the raw vectors fit, IVF-PQ (compressed codes) when they do not. HNSW is never picked automatically:
    its graph build is slow on few cores; name it when query latency matters most.
    """
    flat_bytes, budget = n * dim * 4, memory_budget_gb * 2**30
    kind = index_type
    if kind == "auto":
        kind = (
            "flat"
            if n <= EXACT_MAX and flat_bytes <= budget
            else ("ivf-flat" if flat_bytes * 1.1 <= budget else "ivf-pq")
        )
    chosen: dict[str, Any] = {}
    if kind.startswith("ivf"):
        nlist = 2 ** round(math.log2(max(1.0, math.sqrt(n))))  # ~√n lists, a power of two
        nlist = max(1, min(nlist, n // 39))  # ≥ 39 training points per list
        chosen = {"nlist": nlist, "niter": 10, "nprobe": min(nlist, max(8, nlist // 32))}
    if kind == "ivf-pq":
        chosen.update(m=_pq_m(dim, n, budget), nbits=8)
    if kind == "hnsw":
        chosen = {"M": 32, "ef_construction": 80, "ef_search": 64}
    chosen.update(params or {})
    return kind, chosen


def _pq_m(dim: int, n: int, budget: float) -> int:
    """Sub-quantizers: ~4 dims each when the budget allows, fewer bytes otherwise; must divide dim."""
    divisors = [m for m in range(1, dim + 1) if dim % m == 0 and m <= 96]
    fits = [m for m in divisors if n * (m + 8) <= budget and dim // m >= 4]
    return max(fits) if fits else min(divisors)
