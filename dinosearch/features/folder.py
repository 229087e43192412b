"""The features folder that ``dinosearch embed`` writes and every later stage reads.

Layout of ``OUT/``::

    features.npy       (N, D) float32 backbone features; row i belongs to metadata row i
    metadata.parquet   id, path, label and every manifest column, one row per vector
    skipped.csv        path, reason: files that could not be embedded
    manifest.json      backbone info and fingerprint, count, dim, checksums, source, date

Large jobs write shards into ``OUT.partial/`` first; ``resume=True`` keeps finished shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinosearch.backbones import Backbone
from dinosearch.core.columns import check_metadata_columns
from dinosearch.core.fields import Kind, check_fields
from dinosearch.core.runtime import package_version
from dinosearch.core.storage import (
    clean_leftovers,
    read_json,
    remove_dir,
    replace_dir,
    sha256_file,
    write_json,
)
from dinosearch.inputs.records import load_records, records_fingerprint

DATA_FILES = ("features.npy", "metadata.parquet")
REDO = "re-run `dinosearch embed`"


@dataclass
class FeatureSet:
    """Features and their row-aligned metadata, as stored by ``embed``."""

    features: np.ndarray  # (N, D) float32, may be memory-mapped
    metadata: pd.DataFrame  # N rows: id, path, [label], …
    manifest: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["backbone"]["fingerprint"])


def load_features(folder: str | Path, *, verify: bool = False) -> FeatureSet:
    """Open an ``embed`` output folder; check counts and dimension (and checksums with ``verify``)."""
    root = Path(folder)
    manifest_path = root / "manifest.json"
    if not root.exists():
        clean_leftovers(root)  # an embed killed mid-swap leaves the old folder aside: put it back
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{root} is not a features folder (no manifest.json); make one with `dinosearch embed`"
        )
    manifest = read_json(manifest_path)
    spec: dict[str, Kind] = {"count": "count", "dim": "positive", "backbone.fingerprint": "str"}
    if verify:
        spec.update({f"checksums.{n}": "str" for n in DATA_FILES})
    check_fields(manifest, spec, manifest_path, REDO)
    for name in DATA_FILES:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; {REDO}")
        if verify and sha256_file(path) != manifest["checksums"][name]:
            raise ValueError(f"{path}: checksum differs from manifest.json; the file was altered")
    features, metadata = _read_data(root)
    count, dim = manifest["count"], manifest["dim"]
    if features.shape != (count, dim):
        raise ValueError(
            f"{root / 'features.npy'}: shape {features.shape}, manifest says {(count, dim)}; {REDO}"
        )
    if len(metadata) != count:
        raise ValueError(
            f"{root / 'metadata.parquet'}: {len(metadata)} rows, manifest says {count}; {REDO}"
        )
    return FeatureSet(features, metadata, manifest)


def _read_data(root: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """features.npy (memory-mapped float32) and metadata.parquet; errors name the file."""
    path = root / "features.npy"
    try:
        features = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:  # object arrays, pickles, truncated headers
        raise ValueError(f"{path}: not a .npy array of floats ({e}); {REDO}") from e
    if not np.issubdtype(features.dtype, np.floating) or features.ndim != 2:
        raise ValueError(
            f"{path}: holds a {features.ndim}-d {features.dtype} array, not (N, D) floats; {REDO}"
        )
    try:
        metadata = pd.read_parquet(root / "metadata.parquet")
    except Exception as e:  # Arrow raises its own error types
        raise ValueError(f"{root / 'metadata.parquet'}: unreadable ({e}); {REDO}") from e
    return features, metadata


def embed_to_folder(
    records: pd.DataFrame,
    backbone: Backbone,
    out: str | Path,
    *,
    pre_skipped: pd.DataFrame | None = None,
    shard_size: int = 4096,
    resume: bool = False,
    batch_size: int | None = None,
    num_workers: int | None = None,
    source: str = "",
    progress: bool = True,
) -> FeatureSet:
    """Embed every record into ``out`` (see module docstring); bad files are skipped and listed."""
    out = Path(out)
    check_metadata_columns(records.columns, f"the image list for {out}")
    partial = out.with_name(out.name + ".partial")
    for leftover in (out, partial):
        clean_leftovers(leftover)  # of a run killed mid-swap or mid-delete
    plan = {
        "fingerprint": backbone.fingerprint,
        "images": records_fingerprint(records),
        "count": len(records),
        "shard_size": shard_size,
    }
    if partial.exists() and not (resume and _same_plan(partial, plan)):
        if resume and (partial / "plan.json").is_file():
            raise ValueError(
                f"{partial} was made by another backbone or image set; run again without --resume"
            )
        remove_dir(partial)  # no plan: killed before it was written; nothing to keep
    (partial / "shards").mkdir(parents=True, exist_ok=True)
    write_json(partial / "plan.json", plan)
    spans = [
        (start, min(start + shard_size, len(records)))
        for start in range(0, len(records), shard_size)
        if not _shard_file(partial, start, shard_size).exists()  # finished before an interruption
    ]
    _embed_shards(
        records["path"].tolist(),
        spans,
        partial,
        shard_size,
        backbone,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )
    return _consolidate(records, backbone, partial, out, pre_skipped, source)


def embed_images(
    images: str | Path,
    backbone: Backbone,
    out: str | Path,
    *,
    path_column: str | None = None,
    label_from_folder: bool = True,
    limit: int | None = None,
    **options: Any,
) -> FeatureSet:
    """Embed an image folder or CSV/Parquet manifest into the features folder ``out``.

    ``options`` go to ``embed_to_folder`` (shard_size, resume, batch_size, num_workers, progress).
    Files that are not images (``notes.txt``) and files that fail to decode are listed in
    ``skipped.csv``; the count embedded is ``manifest["count"]``.
    """
    records, passed_over = load_records(
        images, path_column=path_column, label_from_folder=label_from_folder
    )
    if limit is not None:
        records = records.iloc[:limit].reset_index(drop=True)
    return embed_to_folder(
        records, backbone, out, pre_skipped=passed_over, source=str(images), **options
    )


def _same_plan(partial: Path, plan: dict[str, Any]) -> bool:
    try:
        return read_json(partial / "plan.json") == plan
    except (FileNotFoundError, ValueError):
        return False


def _shard_file(partial: Path, start: int, shard_size: int) -> Path:
    return partial / "shards" / f"{start // shard_size:05d}.npz"


def _embed_shards(
    paths: list[str],
    spans: list[tuple[int, int]],
    partial: Path,
    shard_size: int,
    backbone: Backbone,
    **options: Any,
) -> None:
    """Embed the images of every (start, stop) span in one pass, so the loader's workers run on
    across shard boundaries, and write each shard as soon as its last image is done."""
    from dinosearch.features.extract import iter_features

    if not spans:
        return  # every shard finished before an interruption
    todo = np.array([i for start, stop in spans for i in range(start, stop)], dtype=np.int64)
    ends = np.cumsum([stop - start for start, stop in spans])  # local end of each span in todo
    rows: dict[int, np.ndarray] = {}  # local position → (D,) features, until written
    reasons: dict[int, str] = {}
    done, written = 0, 0
    for pos, feats, fails in iter_features([paths[i] for i in todo], backbone, **options):
        rows.update(zip(pos.tolist(), feats, strict=True))
        reasons.update(fails)
        done += len(pos) + len(fails)  # batches arrive in order: positions below done are final
        while written < len(spans) and done >= ends[written]:
            start, stop = spans[written]
            local = range(int(ends[written]) - (stop - start), int(ends[written]))
            kept = [i for i in local if i in rows]
            features = (
                np.stack([rows.pop(i) for i in kept])
                if kept
                else np.empty((0, backbone.embed_dim), np.float32)
            )
            failures = [(int(todo[i]), reasons.pop(i)) for i in local if i in reasons]
            _write_shard(_shard_file(partial, start, shard_size), todo[kept], features, failures)
            written += 1


def _write_shard(
    shard: Path, positions: np.ndarray, features: np.ndarray, failures: list[tuple[int, str]]
) -> None:
    """One shard: positions (n,) into the records, features (n, D), failures [(position, reason)]."""
    fail_pos = np.array([i for i, _ in failures], dtype=np.int64)
    fail_reason = np.array([r for _, r in failures], dtype=str)
    tmp = shard.with_name(shard.stem + ".tmp.npz")
    np.savez(
        tmp, positions=positions, features=features, fail_pos=fail_pos, fail_reason=fail_reason
    )
    tmp.replace(shard)  # a shard either exists whole or not at all


def _consolidate(
    records: pd.DataFrame,
    backbone: Backbone,
    partial: Path,
    out: Path,
    pre_skipped: pd.DataFrame | None,
    source: str,
) -> FeatureSet:
    positions, chunks, fail_pos, fail_reason = [], [], [], []
    for shard in sorted((partial / "shards").glob("*.npz")):
        with np.load(shard) as z:
            positions.append(z["positions"])
            chunks.append(z["features"])
            fail_pos.extend(z["fail_pos"].tolist())
            fail_reason.extend(z["fail_reason"].tolist())
    kept = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
    features = (
        np.concatenate(chunks).astype(np.float32)
        if chunks
        else np.empty((0, backbone.embed_dim), np.float32)
    )
    metadata = records.iloc[kept].reset_index(drop=True)
    skipped = pd.DataFrame({"path": records["path"].iloc[fail_pos].tolist(), "reason": fail_reason})
    if pre_skipped is not None and len(pre_skipped):
        skipped = pd.concat([pre_skipped[["path", "reason"]], skipped], ignore_index=True)
    result = partial / "result"
    remove_dir(result)  # a previous folder swapped out here by a run killed before deleting it
    result.mkdir()
    np.save(result / "features.npy", features)
    metadata.to_parquet(result / "metadata.parquet", index=False)
    skipped.to_csv(result / "skipped.csv", index=False)
    manifest = {
        "kind": "features",
        "backbone": backbone.info(),
        "count": int(len(metadata)),
        "dim": int(backbone.embed_dim),
        "skipped": int(len(skipped)),
        "source": source,
        "images": records_fingerprint(metadata),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dinosearch_version": package_version(),
        "checksums": {n: sha256_file(result / n) for n in DATA_FILES},
    }
    write_json(result / "manifest.json", manifest)
    replace_dir(result, out)
    remove_dir(partial)
    return FeatureSet(np.load(out / "features.npy", mmap_mode="r"), metadata, manifest)
