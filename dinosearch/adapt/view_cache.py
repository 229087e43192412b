"""View cache: backbone features of K augmented views (and the clean view) per image, computed once.

The backbone is frozen, so the features of a fixed set of augmented views never change: compute them
once, store them keyed by everything that made them, and train (and re-train) on pairs of them.

Layout of ``CACHE_DIR/<backbone>-<preset>-k<K>-s<seed>-<key hash>/`` (clean view: ``<backbone>-clean-…``)::

    features.npy   (n, K, D) float32 (clean: (n, 1, D)); row j belongs to records position kept[j]
    kept.npy       (n,) int64 positions in the image set that decoded in every view
    skipped.csv    path, reason
    key.json       the full key; a folder is used only when its key equals the requested one
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinosearch.adapt.augment import build_augment
from dinosearch.backbones import Backbone
from dinosearch.backbones.transforms import ImageTransform, eval_transform
from dinosearch.core.env import cache_root
from dinosearch.core.storage import read_json, replace_dir, write_json
from dinosearch.features.extract import extract_features
from dinosearch.features.folder import FeatureSet
from dinosearch.inputs.records import records_fingerprint

AUGMENT_VERSION = 1  # bump when a preset's recipe changes, so old caches are not reused
CLEAN_SEED = -1  # key marker of the eval-transform view (no randomness)


@dataclass
class ViewSet:
    """Cached view features of the images that decoded."""

    views: np.ndarray  # (N, P, D) float32: K augmented views, then the clean view when present
    records: pd.DataFrame  # N rows, aligned with ``views``
    skipped: pd.DataFrame  # path, reason: images left out
    num_augmented: int  # K
    has_clean: bool
    sources: dict[str, str]  # "views" / "clean" → "cache" | "computed" | "features"
    folder: Path  # cache folder of the augmented views (absent when K = 0)


def default_cache_dir() -> Path:
    """``$DINOSEARCH_CACHE/views``, else ``~/.cache/dinosearch/views``."""
    return cache_root() / "views"


def view_seed(seed: int, view: int) -> int:
    """Seed of augmented view ``view``; ``iter_features`` combines it with each image's position."""
    return seed * 1000 + view


def cache_key(
    backbone: Backbone, images: str, *, preset: str, views: int, seed: int, hflip: bool | None
) -> dict[str, Any]:
    """Everything that determines the cached features; any change picks another folder."""
    return {
        "backbone": backbone.fingerprint,
        "image_size": backbone.preprocess.image_size,
        "images": images,
        "preset": preset,
        "hflip": hflip,
        "views": views,
        "seed": seed,
        "augment_version": AUGMENT_VERSION,
    }


def _folder(cache_dir: Path, key: dict[str, Any], backbone: Backbone) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    what = (
        "clean" if key["seed"] == CLEAN_SEED else f"{key['preset']}-k{key['views']}-s{key['seed']}"
    )
    return cache_dir / f"{backbone.name}-{what}-{digest}"


def views_cached(
    records: pd.DataFrame,
    backbone: Backbone,
    cache_dir: str | Path | None,
    *,
    preset: str,
    views: int,
    seed: int,
    hflip: bool | None,
) -> bool:
    """Whether ``compute_views`` would find these augmented views in the cache (no backbone pass).

    A change of backbone, image size, images, preset, flips, K or seed needs new views."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(
        backbone, records_fingerprint(records), preset=preset, views=views, seed=seed, hflip=hflip
    )
    return _read_cache(_folder(cache, key, backbone), key) is not None


def _read_cache(
    folder: Path, key: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame] | None:
    try:
        if read_json(folder / "key.json") != json.loads(json.dumps(key)):
            return None
        feats = np.load(folder / "features.npy")
        kept = np.load(folder / "kept.npy")
        skipped = pd.read_csv(folder / "skipped.csv", dtype=str, keep_default_na=False)
    except (FileNotFoundError, ValueError, OSError):
        return None  # absent or damaged: recompute
    return feats, kept, skipped


def _compute(
    paths: list[str],
    backbone: Backbone,
    transforms: Sequence[tuple[ImageTransform, int | None]],
    batch_size: int | None,
    num_workers: int | None,
    progress: bool,
    label: str,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Run each (transform, seed) over ``paths``; keep images that decoded in every view."""
    n, per_view = len(paths), []
    failed: dict[int, str] = {}
    for v, (transform, seed) in enumerate(transforms):
        desc = f"{label} {v + 1}/{len(transforms)}" if progress else False
        pos, feats, failures = extract_features(
            paths,
            backbone,
            transform=transform,
            seed=seed,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=desc,
        )
        full = np.full((n, backbone.embed_dim), np.nan, dtype=np.float32)
        full[pos] = feats
        per_view.append(full)
        for i, reason in failures:
            failed.setdefault(i, reason)
    kept = np.array([i for i in range(n) if i not in failed], dtype=np.int64)
    stacked = (
        np.stack(per_view, axis=1)[kept]
        if n
        else np.empty((0, len(transforms), backbone.embed_dim))
    )
    skipped = pd.DataFrame(
        {"path": [paths[i] for i in sorted(failed)], "reason": [failed[i] for i in sorted(failed)]},
        dtype=str,
    )
    return stacked.astype(np.float32), kept, skipped


def _cached(
    cache_dir: Path,
    key: dict[str, Any],
    backbone: Backbone,
    paths: list[str],
    transforms: Sequence[tuple[ImageTransform, int | None]],
    batch_size: int | None,
    num_workers: int | None,
    progress: bool,
    label: str,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, Path, str]:
    folder = _folder(cache_dir, key, backbone)
    hit = _read_cache(folder, key)
    if hit is not None:
        return (*hit, folder, "cache")
    feats, kept, skipped = _compute(
        paths, backbone, transforms, batch_size, num_workers, progress, label
    )
    staged = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    np.save(staged / "features.npy", feats)
    np.save(staged / "kept.npy", kept)
    skipped.to_csv(staged / "skipped.csv", index=False)
    write_json(staged / "key.json", key)
    replace_dir(staged, folder)
    return feats, kept, skipped, folder, "computed"


def _clean_from_features(
    fs: FeatureSet, records: pd.DataFrame, backbone: Backbone, kept: np.ndarray
) -> np.ndarray | None:
    """(n_records, D) rows of ``fs`` for ``records`` (matched by id and path; NaN for images that
    failed anyway), or None when ``fs`` lacks an image that decoded (another image set)."""
    if fs.fingerprint != backbone.fingerprint:
        raise ValueError(
            f"--features were made by backbone {fs.fingerprint!r} but training uses "
            f"{backbone.fingerprint!r}; embed with the same backbone or leave out --features"
        )
    index = pd.Series(np.arange(len(fs.metadata)), index=fs.metadata["id"].astype(str))
    rows = index.reindex(records["id"].astype(str)).to_numpy(dtype=np.float64)
    found = ~np.isnan(rows)
    rows_found = rows[found].astype(np.int64)
    same_path = fs.metadata["path"].to_numpy()[rows_found] == records["path"].to_numpy()[found]
    found[np.flatnonzero(found)[~same_path]] = False
    if not found[kept].all():
        return None
    out = np.full((len(records), backbone.embed_dim), np.nan, dtype=np.float32)
    out[found] = np.asarray(fs.features[rows[found].astype(np.int64)], dtype=np.float32)
    return out


def compute_views(
    records: pd.DataFrame,
    backbone: Backbone,
    *,
    preset: str = "xray",
    views: int = 4,
    seed: int = 0,
    hflip: bool | None = None,
    clean: bool = True,
    clean_features: FeatureSet | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> ViewSet:
    """Features of ``views`` augmented views (+ the clean view) of every record, from the cache when it matches.

    The clean (eval-transform) view comes from ``clean_features`` (a ``dinosearch embed`` output) when
    it holds every image that decoded, else from its own cache entry (keyed by backbone and images).

    Raises:
        ValueError: ``views`` < 1 (0 only with ``clean``), an unknown preset, or ``clean_features``
            from another backbone.
    """
    if views < 0 or (views == 0 and not clean):
        raise ValueError(f"--views {views} must be ≥ 1 (or 0 with the clean view only)")
    augment = build_augment(preset, backbone.preprocess, hflip=hflip)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    images = records_fingerprint(records)
    paths = records["path"].astype(str).tolist()
    key = cache_key(backbone, images, preset=preset, views=views, seed=seed, hflip=hflip)
    folder, sources = _folder(root, key, backbone), {}
    feats = np.empty((len(records), 0, backbone.embed_dim), dtype=np.float32)
    kept, skipped = np.arange(len(records)), pd.DataFrame({"path": [], "reason": []}, dtype=str)
    if views:
        transforms = [(augment, view_seed(seed, v)) for v in range(views)]
        feats, kept, skipped, folder, sources["views"] = _cached(
            root, key, backbone, paths, transforms, batch_size, num_workers, progress, "views"
        )
    if clean:
        full, cskipped, sources["clean"] = _clean_view(
            records, backbone, kept, clean_features, root, images, batch_size, num_workers, progress
        )
        if cskipped is not None:
            skipped = pd.concat([skipped, cskipped]).drop_duplicates("path", ignore_index=True)
        both = ~np.isnan(full[kept, 0, 0])
        feats = np.concatenate([feats[both], full[kept[both]]], axis=1)
        kept = kept[both]
    return ViewSet(
        views=feats,
        records=records.iloc[kept].reset_index(drop=True),
        skipped=skipped,
        num_augmented=views,
        has_clean=clean,
        sources=sources,
        folder=folder,
    )


def _clean_view(
    records: pd.DataFrame,
    backbone: Backbone,
    kept: np.ndarray,
    clean_features: FeatureSet | None,
    cache: Path,
    images: str,
    batch_size: int | None,
    num_workers: int | None,
    progress: bool,
) -> tuple[np.ndarray, pd.DataFrame | None, str]:
    """(n_records, 1, D) clean-view features (NaN where none), the images it skipped (None
    when taken from ``clean_features``), and its source ("features", "cache" or "computed")."""
    full = np.full((len(records), 1, backbone.embed_dim), np.nan, dtype=np.float32)
    from_fs = (
        _clean_from_features(clean_features, records, backbone, kept) if clean_features else None
    )
    if from_fs is not None:
        full[:, 0] = from_fs
        return full, None, "features"
    ckey = cache_key(backbone, images, preset="eval", views=1, seed=CLEAN_SEED, hflip=None)
    cfeats, ckept, cskipped, _, source = _cached(
        cache,
        ckey,
        backbone,
        records["path"].astype(str).tolist(),
        [(eval_transform(backbone.preprocess), None)],
        batch_size,
        num_workers,
        progress,
        "clean view",
    )
    full[ckept] = cfeats
    return full, cskipped, source
