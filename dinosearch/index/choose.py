"""Choose the FAISS index type and its parameters from the vector count, dimension and memory budget.

The rules borrow autofaiss's arithmetic (``autofaiss/external/optimize.py``: bytes per vector = code
bytes + an 8-byte id in the inverted lists; a power-of-two number of lists) but not its choices: its
compressed indexes are never re-ranked, which caps their recall, and its HNSW-first pick builds for
hours on a few cores. Here a compressed index keeps a second, finer copy of every vector (fp16 or
8-bit) to re-rank its candidates, so recall@10 stays ≥ 0.95 at any size that fits the budget.
"""

from __future__ import annotations

import math
from typing import Any

from dinosearch.index.config import REFINES, IndexType

EXACT_MAX = 250_000  # "auto" searches exactly up to here: a flat scan of 250k × 384-d is a few ms
# Parameters a search may change without rebuilding (faiss's ParameterSpace names in ``handle``).
SEARCH_PARAMS = ("nprobe", "k_factor", "ef_search")
_REFINE_BYTES = {"flat": 4.0, "fp16": 2.0, "sq8": 1.0, "none": 0.0}  # per dimension
_HEADROOM = 1.1  # list and allocator overheads on top of the estimate


def choose_index(
    n: int,
    dim: int,
    index_type: IndexType = "auto",
    memory_budget_gb: float = 8.0,
    params: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Pick the index type and its parameters for ``n`` vectors of ``dim``.

    "auto": exact Flat up to ``EXACT_MAX`` vectors (when they fit the budget), IVF-Flat above it while
    the raw vectors fit, IVF-PQ re-ranked from fp16 or 8-bit copies (``refine``) when they do not.
    HNSW is never picked automatically: its graph build is slow on few cores and it keeps every vector
    in full; name it when query latency matters most. ``params`` override what is chosen.
    """
    budget = memory_budget_gb * 2**30
    kind = index_type
    if kind == "auto":
        flat = estimate_bytes("flat", n, dim, {})
        kind = (
            "flat"
            if n <= EXACT_MAX and flat <= budget
            else ("ivf-flat" if flat * _HEADROOM <= budget else "ivf-pq")
        )
    chosen: dict[str, Any] = {}
    if kind.startswith("ivf"):
        nlist = 2 ** round(math.log2(max(1.0, math.sqrt(n))))  # ~√n lists, a power of two
        nlist = max(1, min(nlist, n // 39))  # ≥ 39 training points per list
        chosen = {"nlist": nlist, "niter": 10, "nprobe": min(nlist, max(8, nlist // 32))}
    if kind == "ivf-pq":
        chosen.update(m=_pq_m(dim), nbits=8)
        chosen.update(params or {})
        if "refine" not in (params or {}):
            chosen["refine"] = _refine(n, dim, chosen, budget)
        if chosen["refine"] != "none":
            # candidates re-ranked per result wanted: at 5M with the 8-bit copy recall@10 was
            # 0.882 / 0.941 / 0.961 / 0.966 for 8 / 16 / 32 / 64 (nprobe 64 or 128 alike)
            chosen.setdefault("k_factor", 32)
    if kind == "hnsw":  # a deeper search as the graph grows: recall@10 0.83 at 1M with 64
        ef = 64 * 2 ** math.ceil(math.log2(max(1.0, n / EXACT_MAX)))
        chosen = {"M": 32, "ef_construction": 80, "ef_search": min(ef, 512)}
    chosen.update(params or {})
    _check(kind, dim, chosen)
    return kind, chosen


def estimate_bytes(kind: str, n: int, dim: int, p: dict[str, Any]) -> float:
    """Memory of a filled index of ``kind`` (bytes): codes, ids, graph links and centroids."""
    if kind == "flat":
        return 4.0 * n * dim
    if kind == "hnsw":
        return n * (4.0 * dim + 2 * 4 * int(p.get("M", 32)) * 1.05)  # level 0 has 2M links
    centroids = 4.0 * int(p.get("nlist", 1)) * dim
    if kind == "ivf-flat":
        return n * (4.0 * dim + 8) + centroids
    code = int(p.get("m", _pq_m(dim))) * int(p.get("nbits", 8)) / 8
    refine = _REFINE_BYTES[str(p.get("refine", "none"))] * dim
    return n * (code + 8 + refine) + centroids


def _pq_m(dim: int) -> int:
    """Sub-quantizers (code bytes): ~4 dims each, at most 96; must divide ``dim``. Fewer, coarser
    ones (``--pq-m 48``) need a larger ``k_factor`` for the same recall."""
    divisors = [m for m in range(1, dim + 1) if dim % m == 0 and m <= 96]
    return max([m for m in divisors if dim // m >= 4] or [min(divisors)])


def _refine(n: int, dim: int, p: dict[str, Any], budget: float) -> str:
    """The finest re-ranking copy that fits ``budget`` next to the PQ codes: fp16, 8-bit or none."""
    for refine in ("fp16", "sq8"):
        if estimate_bytes("ivf-pq", n, dim, {**p, "refine": refine}) * _HEADROOM <= budget:
            return refine
    return "none"


def _check(kind: str, dim: int, p: dict[str, Any]) -> None:
    if kind == "ivf-pq":
        if dim % int(p["m"]):
            raise ValueError(f"--pq-m {p['m']} must divide the vector dimension {dim}")
        if p["refine"] not in REFINES:
            raise ValueError(f"--refine {p['refine']!r} is not one of {', '.join(REFINES)}")
    for name in ("nprobe", "nlist", "ef_search", "M"):
        if name in p and int(p[name]) < 1:
            raise ValueError(f"{name} must be ≥ 1, got {p[name]}")
