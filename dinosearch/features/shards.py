"""Sharded writing of a features folder, shared by the local and the Ray engine: plan the shards
(``OUT.partial/plan.json``; ``resume`` keeps a matching plan's finished shards), write each shard
atomically, and consolidate the shards into the folder ``features.folder`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinosearch.backbones import Backbone
from dinosearch.core.runtime import package_version
from dinosearch.core.storage import (
    clean_leftovers,
    read_json,
    remove_dir,
    replace_dir,
    sha256_file,
    write_json,
)
from dinosearch.inputs.records import records_fingerprint

DATA_FILES = ("features.npy", "metadata.parquet")


def open_partial(
    records: pd.DataFrame, backbone: Backbone, out: Path, shard_size: int, resume: bool
) -> Path:
    """``OUT.partial/`` for this plan: kept on ``resume`` when the plan matches, else started anew."""
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
    return partial


def shard_path(partial: Path, start: int, shard_size: int) -> Path:
    """Where the shard of records ``start`` … ``start + shard_size - 1`` is kept while running."""
    return partial / "shards" / f"{start // shard_size:05d}.npz"


def write_shard(
    shard: Path,
    positions: np.ndarray,
    features: np.ndarray,
    failures: list[tuple[int, str]],
    warnings: Sequence[tuple[int, str]] = (),
) -> None:
    """Save one shard: kept positions (n,) sorted, their (n, D) features, failures (position, reason)
    and warnings (position, warning) of kept images."""
    fail_pos = np.array([i for i, _ in failures], dtype=np.int64)
    fail_reason = np.array([r for _, r in failures], dtype=str)
    tmp = shard.with_name(shard.stem + ".tmp.npz")
    np.savez(
        tmp,
        positions=positions,
        features=features,
        fail_pos=fail_pos,
        fail_reason=fail_reason,
        warn_pos=np.array([i for i, _ in warnings], dtype=np.int64),
        warn_reason=np.array([r for _, r in warnings], dtype=str),
    )
    tmp.replace(shard)  # a shard either exists whole or not at all


def _same_plan(partial: Path, plan: dict[str, Any]) -> bool:
    try:
        return read_json(partial / "plan.json") == plan
    except (FileNotFoundError, ValueError):
        return False


def embed_local(
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
    notes: list[tuple[int, str]] = []  # (local position, warning), filled by iter_features
    done, written = 0, 0
    batches = iter_features([paths[i] for i in todo], backbone, warnings=notes, **options)
    for pos, feats, fails in batches:
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
            warned = [(int(todo[i]), note) for i, note in notes if i in local]
            write_shard(
                shard_path(partial, start, shard_size), todo[kept], features, failures, warned
            )
            written += 1


def consolidate(
    records: pd.DataFrame,
    backbone: Backbone,
    partial: Path,
    out: Path,
    pre_skipped: pd.DataFrame | None,
    source: str,
    config: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Shards → the features folder; features.npy is written shard by shard (never all in memory).
    → (metadata, manifest) of the folder written."""
    shards = sorted((partial / "shards").glob("[0-9]*.npz"))
    positions, fail_pos, fail_reason, warn_pos, warn_reason = [], [], [], [], []
    for shard in shards:
        with np.load(shard) as z:
            positions.append(z["positions"])
            fail_pos.extend(z["fail_pos"].tolist())
            fail_reason.extend(z["fail_reason"].tolist())
            if "warn_pos" in z.files:  # shards of an earlier version have none
                warn_pos.extend(z["warn_pos"].tolist())
                warn_reason.extend(z["warn_reason"].tolist())
    kept = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
    result = partial / "result"
    remove_dir(result)  # a previous folder swapped out here by a run killed before deleting it
    result.mkdir()
    _write_features(shards, result / "features.npy", len(kept), backbone.embed_dim)
    metadata = records.iloc[kept].reset_index(drop=True)
    skipped = pd.DataFrame({"path": records["path"].iloc[fail_pos].tolist(), "reason": fail_reason})
    if pre_skipped is not None and len(pre_skipped):
        skipped = pd.concat([pre_skipped[["path", "reason"]], skipped], ignore_index=True)
    metadata.to_parquet(result / "metadata.parquet", index=False)
    skipped.to_csv(result / "skipped.csv", index=False)
    warned = pd.DataFrame({"path": records["path"].iloc[warn_pos].tolist(), "warning": warn_reason})
    warned.to_csv(result / "warnings.csv", index=False)
    manifest = {
        "kind": "features",
        "backbone": backbone.info(),
        "count": int(len(metadata)),
        "dim": int(backbone.embed_dim),
        "skipped": int(len(skipped)),
        "warnings": int(len(warned)),
        "source": source,
        "images": records_fingerprint(metadata),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dinosearch_version": package_version(),
        "checksums": {n: sha256_file(result / n) for n in DATA_FILES},
        **({"config": config} if config else {}),
    }
    write_json(result / "manifest.json", manifest)
    replace_dir(result, out)
    remove_dir(partial)
    return metadata, manifest


def _write_features(shards: Sequence[Path], path: Path, count: int, dim: int) -> None:
    """Copy the shards' features, in order, into a new (count, dim) float32 ``path``, one shard in
    memory at a time."""
    features = np.lib.format.open_memmap(path, "w+", np.float32, (count, dim))
    row = 0
    for shard in shards:
        with np.load(shard) as z:
            chunk = z["features"]
            features[row : row + len(chunk)] = chunk
            row += len(chunk)
    features.flush()
    del features
