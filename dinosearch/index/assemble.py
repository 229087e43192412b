"""Assemble a FAISS index: train its quantizers on a sample, then fill it chunk by chunk.

Only the training sample and one chunk of vectors are in memory at a time, so the collection may be
larger than memory; the index itself must fit (``choose.estimate_bytes``). Training runs in NumPy
(``knn.kmeans``, ``knn.train_pq``) or on a GPU that faiss sees.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import faiss
import numpy as np

from dinosearch.index.knn import add_vectors, kmeans, sample, train_pq

# A fresh pass over the (n, D) float32 unit vectors, one (c, D) chunk at a time.
Chunks = Callable[[], Iterator[np.ndarray]]
_REFINE_SPEC = {"flat": "Flat", "fp16": "SQfp16", "sq8": "SQ8"}


def train_size(kind: str, p: dict[str, Any], n: int) -> int:
    """Vectors to train on: ~40 per IVF list, enough for PQ codebooks and 8-bit ranges."""
    if not kind.startswith("ivf"):
        return 0
    per_list = int(p["nlist"]) * int(p.get("max_points_per_centroid", 40))
    return min(n, max(per_list, 64 * 2 ** int(p.get("nbits", 8)), 65_536))


def build_faiss(
    kind: str,
    p: dict[str, Any],
    dim: int,
    train: np.ndarray,
    chunks: Chunks,
    use_gpu: bool | None,
) -> tuple[faiss.Index, str]:
    """A filled index of ``kind`` (see ``choose.choose_index``): on a GPU faiss sees, else here.

    Args:
        train: (s, D) unit vectors to train quantizers on (see ``train_size``; empty for flat/HNSW).
        chunks: every vector to add, chunk by chunk, in id order.
    Returns the CPU index and where it was built ("gpu" or "cpu").
    """
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu and not gpus:
        raise ValueError(
            "a GPU build was asked for but faiss sees no GPU; install faiss-gpu or drop --gpu"
        )
    if gpus and use_gpu is not False and kind != "hnsw":  # faiss builds HNSW on the CPU only
        try:
            return _build_gpu(kind, p, dim, train, chunks), "gpu"
        except Exception as e:  # an unsupported parameter on the GPU is no reason to fail the build
            if use_gpu:
                raise
            warnings.warn(f"GPU build failed ({e}); building on the CPU", stacklevel=2)
    base, refine = _base(kind, dim, p), _refine(dim, p, train)
    if isinstance(base, faiss.IndexIVF):  # coarse k-means by BLAS matmul: see ``knn.kmeans``
        points = sample(train, int(p["nlist"]) * int(p.get("max_points_per_centroid", 40)))
        base.quantizer.add(kmeans(points, int(p["nlist"]), niter=int(p.get("niter", 10))))
    if isinstance(base, faiss.IndexIVFPQ):
        train_pq(base, sample(train, 40 * 2 ** int(p.get("nbits", 8))), int(p.get("niter", 10)))
    base.is_trained = True  # quantizer (and codebooks) set above; Flat and HNSW need no training
    index = _wrap(base, refine, p)
    for chunk in chunks():
        add_vectors(index, chunk)
    return index, "cpu"


def train_add(
    kind: str, p: dict[str, Any], vectors: np.ndarray, use_gpu: bool | None
) -> tuple[faiss.Index, str]:
    """``build`` from (N, D) vectors already in memory (trained on a sample of them)."""
    train = sample(vectors, train_size(kind, p, len(vectors)))
    return build_faiss(kind, p, vectors.shape[1], train, lambda: iter([vectors]), use_gpu)


def set_search_params(index: faiss.Index, p: dict[str, Any]) -> None:
    """Apply the search-time parameters in ``p`` (nprobe, k_factor, ef_search) that ``index`` has."""
    base = index
    if isinstance(index, faiss.IndexRefine):
        base = faiss.downcast_index(index.base_index)
        if "k_factor" in p:
            index.k_factor = float(p["k_factor"])
    if isinstance(base, faiss.IndexIVF) and "nprobe" in p:
        base.nprobe = int(p["nprobe"])
    if isinstance(base, faiss.IndexHNSW) and "ef_search" in p:
        base.hnsw.efSearch = int(p["ef_search"])


def _base(kind: str, dim: int, p: dict[str, Any]) -> faiss.Index:
    """The untrained index that finds candidates (everything but the re-ranking copy)."""
    spec = {
        "flat": "Flat",
        "ivf-flat": f"IVF{p.get('nlist')},Flat",
        "ivf-pq": f"IVF{p.get('nlist')},PQ{p.get('m')}x{p.get('nbits', 8)}",
        "hnsw": f"HNSW{p.get('M')},Flat",
    }[kind]
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    if isinstance(index, faiss.IndexIVF):
        index.cp.niter = int(p.get("niter", 10))
        index.cp.max_points_per_centroid = int(p.get("max_points_per_centroid", 40))
    if isinstance(index, faiss.IndexIVFPQ):
        index.pq.cp.niter = int(p.get("niter", 10))
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efConstruction = int(p["ef_construction"])
    set_search_params(index, p)
    return index


def _refine(dim: int, p: dict[str, Any], train: np.ndarray) -> faiss.Index | None:
    """The trained copy that re-ranks candidates exactly (flat) or nearly (fp16, 8-bit); None: none."""
    spec = _REFINE_SPEC.get(str(p.get("refine", "none")))
    if spec is None:
        return None
    refine = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    refine.train(np.ascontiguousarray(train))  # 8-bit: per-dimension ranges; fp16, flat: nothing
    return refine


def _wrap(base: faiss.Index, refine: faiss.Index | None, p: dict[str, Any]) -> faiss.Index:
    """``base`` alone, or an ``IndexRefine`` that re-ranks its ``k_factor``·k candidates by ``refine``."""
    if refine is None:
        set_search_params(base, p)
        return base
    index = faiss.IndexRefine(base, refine)
    index.own_fields = True  # the C++ index frees both parts; Python must not free them again
    base.this.disown()  # type: ignore[attr-defined]
    refine.this.disown()  # type: ignore[attr-defined]
    set_search_params(index, p)
    return index


def _build_gpu(
    kind: str, p: dict[str, Any], dim: int, train: np.ndarray, chunks: Chunks
) -> faiss.Index:
    """Train and fill the candidate index on GPU 0 (faiss's own k-means); re-ranking copy on the CPU."""
    options = faiss.GpuClonerOptions()
    options.useFloat16 = kind == "ivf-pq"  # PQ lookup tables only; stored codes do not change
    gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, _base(kind, dim, p), options)
    if kind != "flat":
        gpu.train(np.ascontiguousarray(train))
    refine = _refine(dim, p, train)
    for chunk in chunks():
        gpu.add(chunk)
        if refine is not None:
            refine.add(chunk)
    return _wrap(faiss.index_gpu_to_cpu(gpu), refine, p)
