"""``dinosearch index``'s settings (standard library only: ``--help`` never waits for faiss)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from dinosearch.core.config import opt

IndexType = Literal["auto", "flat", "ivf-flat", "ivf-pq", "hnsw"]
INDEX_TYPES: tuple[IndexType, ...] = ("auto", "flat", "ivf-flat", "ivf-pq", "hnsw")
Refine = Literal["flat", "fp16", "sq8", "none"]
REFINES: tuple[Refine, ...] = ("flat", "fp16", "sq8", "none")
_TUNE = "index parameters (default: chosen by size and budget)"


@dataclass(frozen=True)
class IndexConfig:
    """A features folder (+ adapter) → a published FAISS index version."""

    features: str = opt("features folder written by `dinosearch embed`", required=True)
    adapter: str | None = opt("trained adapter folder (omit for the raw index)", default=None)
    out: str = opt("index folder, e.g. indexes/NAME", required=True)
    index_type: IndexType = opt("exact flat, ivf-flat, ivf-pq, hnsw, or auto (by size and memory budget)", default="auto")  # fmt: skip
    memory_budget_gb: float = opt("memory the index may use; steers --index-type auto", default=8.0)
    append: bool = opt("add these (new) images to the live version as a new version", default=False)  # fmt: skip
    skip_existing: bool = opt("with --append: leave out ids the index already holds instead of refusing them", default=False)  # fmt: skip
    nlist: int | None = opt("IVF: number of lists", default=None, group=_TUNE)
    nprobe: int | None = opt("IVF: lists scanned per query", default=None, group=_TUNE)
    pq_m: int | None = opt("IVF-PQ: sub-quantizers (bytes per vector)", default=None, group=_TUNE)
    refine: Refine | None = opt("IVF-PQ: copy that re-ranks candidates (default: the finest the budget allows)", default=None, group=_TUNE)  # fmt: skip
    k_factor: float | None = opt("IVF-PQ with --refine: candidates re-ranked per result wanted (default 16)", default=None, group=_TUNE)  # fmt: skip
    hnsw_m: int | None = opt("HNSW: links per node", default=None, group=_TUNE)
    ef_search: int | None = opt("HNSW: search depth", default=None, group=_TUNE)
    keep: int = opt("published versions to keep", default=3)
    gpu: bool = opt("build on the CPU even when faiss sees a GPU", default=True, negate="--no-gpu")

    def __post_init__(self) -> None:
        if self.skip_existing and not self.append:
            raise ValueError("--skip-existing only applies with --append; add --append")
        if self.memory_budget_gb <= 0:
            raise ValueError(f"--memory-budget-gb {self.memory_budget_gb}: must be > 0")
        if self.keep < 1:
            raise ValueError(f"--keep {self.keep}: keep at least 1 version")

    def params(self) -> dict[str, Any]:
        """The index parameters given (``build_index``'s ``params`` names)."""
        names = {
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "m": self.pq_m,
            "refine": self.refine,
            "k_factor": self.k_factor,
            "M": self.hnsw_m,
            "ef_search": self.ef_search,
        }
        return {k: v for k, v in names.items() if v is not None}
