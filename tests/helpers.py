"""Plain helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TINY = "dinov2_tiny_test"
TINY_SIZE = 56
# CLI flags for the tiny seeded DINOv2, shared by every command-line test.
TINY_CLI = ["--backbone", TINY, "--weights", "random", "--image-size", str(TINY_SIZE)]
# Scores closer than this are ties: BLAS rounds float32 dot products differently per CPU and shape.
TIE = 1e-5


def assert_knn_equal(
    ref_scores: np.ndarray,
    ref_ids: np.ndarray,
    scores: np.ndarray,
    ids: np.ndarray,
    *,
    tol: float = TIE,
) -> None:
    """Two k-NN results agree up to ties (as faiss's ``contrib.evaluation.check_ref_knn_with_draws``).

    Scores must match within ``tol``; ids must match as sets within each run of scores that lie within
    ``tol`` of each other, except the last run, which the cut at k may split either way: there the
    ids need only score within ``tol`` of the reference's last score.
    """
    np.testing.assert_allclose(scores, ref_scores, atol=tol, rtol=0)
    assert ids.shape == ref_ids.shape
    for row, (rs, ri, s, i) in enumerate(zip(ref_scores, ref_ids, scores, ids, strict=True)):
        assert np.all(np.diff(s) <= tol), f"row {row}: scores not in descending order: {s}"
        clear = rs > rs[-1] + tol  # ids ranked clearly above the cut
        for start in np.flatnonzero(clear):
            band = np.abs(rs - rs[start]) <= tol
            assert set(ri[band & clear]) <= set(i[np.abs(s - rs[start]) <= tol]), (
                f"row {row}: ids {ri[band & clear]} (score {rs[start]:.6f}) missing or misplaced in {i}"
            )
        assert np.all(np.abs(s[~clear] - rs[-1]) <= tol), f"row {row}: last band differs"


def assert_ranked(
    ids: Sequence[Any], scores: Sequence[float], want: Sequence[Any], tol: float = TIE
) -> None:
    """``ids`` are ``want`` in order, except that ids whose ``scores`` are within ``tol`` may swap."""
    ids, want, s = list(ids), list(want), np.asarray(scores, dtype=np.float64)
    assert len(ids) == len(want), f"{len(ids)} results, want {len(want)}"
    assert np.all(np.diff(s) <= tol), f"scores not in descending order: {s}"
    for r, (got, expected) in enumerate(zip(ids, want, strict=True)):
        if got != expected:
            tied = [ids[j] for j in range(len(ids)) if abs(s[j] - s[r]) <= tol]
            assert expected in tied, (
                f"rank {r + 1}: got {got}, want {expected} (ranking {ids} vs {want})"
            )


def brute_force_ranking(vectors: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ids of (N, D) ``vectors`` by descending inner product with (D,) ``query``, computed in float64."""
    scores = vectors.astype(np.float64) @ query.astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    return order, scores[order]


def precision_at(vectors: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int) -> float:
    """Leave-one-patient-out precision@k by brute force: a full float64 similarity matrix, sorted."""
    scores = vectors.astype(np.float64) @ vectors.astype(np.float64).T
    scores[groups[:, None] == groups[None, :]] = -np.inf  # the query and its patient's other films
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((labels[top] == labels[:, None]).mean())


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def read_cxr_manifest(folder: Path) -> Any:
    """The manifest of a real X-ray folder (the shared set's Parquet or the sample's CSV)."""
    import pandas as pd

    parquet = folder / "manifest.parquet"
    return pd.read_parquet(parquet) if parquet.is_file() else pd.read_csv(folder / "manifest.csv")


def ramp(h: int = 32, w: int = 48, hi: int = 4095) -> np.ndarray:
    """(h, w) uint16 horizontal ramp from 0 to ``hi``."""
    return (np.linspace(0, hi, w)[None, :].repeat(h, axis=0)).astype(np.uint16)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | None = None,
) -> Path:
    """A minimal valid DICOM file (Explicit VR Little Endian) holding ``pixels`` (uint16)."""
    from dicom_data import dataset, save

    ds = dataset(pixels, 16, photometric=photometric)
    ds.Modality = "CR"
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    return save(ds, path)


def demo_argv(root: Path, *extra: str) -> list[str]:
    """The ``tiny_demo`` fixture's `dinosearch demo` command on ``root``, plus ``extra`` flags."""
    return [
        "demo",
        "--images",
        str(root / "images.csv"),
        "--root",
        str(root),
        "--name",
        "t",
        *TINY_CLI,
        *("--views", "1", "--epochs", "2", "--k", "1,3", "--bootstrap", "50"),
        *("--no-progress", "--workers", "0"),
        *extra,
    ]


def sample_films(n: int) -> list[Path]:
    """The first ``n`` JPEGs of the bundled sample, by name."""
    from dinosearch.inputs import SAMPLE_DIR

    return sorted((SAMPLE_DIR / "images").glob("*.jpg"))[:n]


def build_mean_indexes(backbone: Any, root: Path) -> Path:
    """``root/indexes`` with m-raw and m-adapted (untrained adapter) of 12 sample films, as the
    mean-pooled ``backbone`` embeds them; → that indexes folder."""
    import pandas as pd
    import torch

    from dinosearch.features.folder import embed_to_folder
    from dinosearch.index import build_index

    paths = [str(p) for p in sample_films(12)]
    records = pd.DataFrame(
        {"path": paths, "id": [Path(p).stem for p in paths], "label": ["x"] * 12}
    )
    embed_to_folder(records, backbone, root / "features", num_workers=0, progress=False)
    torch.manual_seed(0)
    save_untrained_adapter(root / "adapter", backbone)
    build_index(root / "features", root / "indexes" / "m-raw")
    build_index(root / "features", root / "indexes" / "m-adapted", adapter_dir=root / "adapter")
    return root / "indexes"


def save_untrained_adapter(folder: Path, backbone: Any) -> str:
    """An untrained adapter (bottleneck 16) for ``backbone``, saved to ``folder``; → its fingerprint."""
    from dinosearch.adapt.adapter import AdapterConfig, DomainAdapter, save_adapter

    return save_adapter(
        DomainAdapter(AdapterConfig(in_dim=backbone.embed_dim, bottleneck=16)),
        folder,
        backbone_fingerprint=backbone.fingerprint,
        train_config={},
        data={},
        metrics={},
    )


def write_features_folder(
    folder: Path, features: np.ndarray, metadata: Any, backbone_info: dict
) -> Path:
    """A features folder as `dinosearch embed` writes it, from arrays (no backbone run)."""
    import pandas as pd

    from dinosearch.core.storage import sha256_file, write_json

    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "features.npy", np.asarray(features, dtype=np.float32))
    pd.DataFrame(metadata).to_parquet(folder / "metadata.parquet", index=False)
    write_json(
        folder / "manifest.json",
        {
            "kind": "features",
            "backbone": backbone_info,
            "count": len(features),
            "dim": int(features.shape[1]),
            "skipped": 0,
            "source": "synthetic",
            "images": f"synthetic-{len(features)}-{float(np.asarray(features).sum()):.6f}",
            "checksums": {n: sha256_file(folder / n) for n in ("features.npy", "metadata.parquet")},
        },
    )
    return folder


def clustered_vectors(n: int, dim: int, *, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """Seeded unit vectors drawn around ``clusters`` centres: a synthetic set with real neighbours."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    """Apply ``change`` to the JSON object in ``path``; a list it returns replaces the object."""
    data = json.loads(path.read_text())
    result = change(data)
    path.write_text(json.dumps(result if isinstance(result, list) else data))
