"""A features folder rewritten as (old rows kept) + (new rows), swapped in whole, never half."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinosearch.core.runtime import package_version
from dinosearch.core.storage import remove_dir, replace_dir, sha256_file, write_json
from dinosearch.features.folder import DATA_FILES, FeatureSet, load_features
from dinosearch.inputs.records import records_fingerprint

CHUNK = 65536  # rows copied at a time: features.npy is never all in memory


def read_skipped(folder: Path | None) -> pd.DataFrame:
    path = None if folder is None else folder / "skipped.csv"
    if path is None or not path.is_file():
        return pd.DataFrame({"path": pd.Series(dtype=str), "reason": pd.Series(dtype=str)})
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def merge_features(
    old: FeatureSet | None,
    keep: np.ndarray,
    new_dir: Path | None,
    out: Path,
    *,
    skipped_paths: set[str],
    config: dict[str, Any],
) -> FeatureSet:
    """Write ``out`` = old rows where ``keep`` (N,) bool, then every row of ``new_dir``.

    ``skipped.csv`` keeps old and new entries whose path is in ``skipped_paths`` (those the
    archive still has). The result is built in ``OUT.sync/`` and swapped in with ``replace_dir``.
    """
    new = load_features(new_dir) if new_dir is not None else None
    backbone = (old or new).manifest["backbone"]  # type: ignore[union-attr]
    dim = int((old or new).manifest["dim"])  # type: ignore[union-attr]
    staged = out.with_name(out.name + ".sync")
    remove_dir(staged)
    staged.mkdir(parents=True)
    rows = np.flatnonzero(keep) if old is not None else np.empty(0, np.int64)
    count = len(rows) + (len(new.features) if new is not None else 0)
    target = np.lib.format.open_memmap(staged / "features.npy", "w+", np.float32, (count, dim))
    at = 0
    for start in range(0, len(rows), CHUNK):
        part = rows[start : start + CHUNK]
        target[at : at + len(part)] = old.features[part]  # type: ignore[union-attr]
        at += len(part)
    if new is not None:
        target[at:] = new.features
    target.flush()
    del target
    parts = [old.metadata.iloc[rows]] if old is not None else []
    parts += [new.metadata] if new is not None else []
    metadata = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    metadata.to_parquet(staged / "metadata.parquet", index=False)
    skipped = pd.concat([read_skipped(out if old is not None else None), read_skipped(new_dir)])
    skipped = skipped[skipped["path"].isin(skipped_paths)].drop_duplicates("path")
    skipped.to_csv(staged / "skipped.csv", index=False)
    manifest = {
        "kind": "features",
        "backbone": backbone,
        "count": int(count),
        "dim": dim,
        "skipped": int(len(skipped)),
        "source": config.get("archive", ""),
        "images": records_fingerprint(metadata) if len(metadata) else "",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dinosearch_version": package_version(),
        "sync": config,
        "checksums": {n: sha256_file(staged / n) for n in DATA_FILES},
    }
    write_json(staged / "manifest.json", manifest)
    replace_dir(staged, out)
    return load_features(out)
